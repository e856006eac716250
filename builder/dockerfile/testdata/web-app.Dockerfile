ARG NODE=20
FROM node:${NODE}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci

FROM deps AS assets
COPY <<EOF /app/.env
FROM=not-an-instruction
EOF
RUN <<-SCRIPT
	set -e
	npm run build
	SCRIPT

FROM nginx:1.27-alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
RUN --mount=type=bind,from=busybox:1.36,source=/bin/busybox,target=/bb /bb true
COPY --from=1 /app/dist /usr/share/nginx/html
COPY --from=nginx:1.27-alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef /etc/nginx /etc/nginx
