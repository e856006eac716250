package main

import (
	"testing"

	"kiln/builder"
)

func TestParseSecret(t *testing.T) {
	tests := []struct {
		in      string
		id      string
		want    builder.Secret
		wantErr bool
	}{
		{in: "id=npmrc,src=/home/me/.npmrc", id: "npmrc", want: builder.Secret{File: "/home/me/.npmrc"}},
		{in: "id=tok,env=TOKEN", id: "tok", want: builder.Secret{Env: "TOKEN"}},
		{in: "src=/run/secrets/key.pem", id: "key.pem", want: builder.Secret{File: "/run/secrets/key.pem"}},
		{in: "env=TOKEN", id: "TOKEN", want: builder.Secret{Env: "TOKEN"}},
		{in: "id=tok,type=env,src=TOKEN", id: "tok", want: builder.Secret{Env: "TOKEN"}}, // buildx's and kaniko forks' form
		{in: "id=f,type=file,source=/x", id: "f", want: builder.Secret{File: "/x"}},
		{in: "id=x,src=/a,env=B", wantErr: true},
		{in: "id=x", wantErr: true},
		{in: "id=x,type=socket,src=/a", wantErr: true},
		{in: "id=x,mode=0400,src=/a", wantErr: true},
		{in: "/a", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			id, s, err := parseSecret(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseSecret(%q) = %q, %+v; want an error", tt.in, id, s)
				}
				return
			}
			if err != nil || id != tt.id || s != tt.want {
				t.Errorf("parseSecret(%q) = %q, %+v, %v; want %q, %+v", tt.in, id, s, err, tt.id, tt.want)
			}
		})
	}
}
