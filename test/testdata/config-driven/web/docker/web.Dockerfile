ARG NODE_VERSION=18

FROM @REGISTRY@/web/node:${NODE_VERSION} AS deps
WORKDIR /app
RUN npm ci

# A tool that only exists for amd64, pinned to it whatever the target.
FROM --platform=linux/amd64 @REGISTRY@/tools/lint:1 AS lint
RUN lint /app

# A stage built on another stage: no image of its own.
FROM deps AS test
RUN npm test

FROM @REGISTRY@/base/multi:1 AS runtime
COPY --from=deps /app/node_modules /app/node_modules
COPY --from=1 /app/report.xml /report.xml
