package dockerfile

import (
	"errors"
	"testing"

	"kiln/platform"
)

func TestNewPlan(t *testing.T) {
	type stageWant struct {
		base      string
		baseStage int
		platform  string
		line      int
		commands  int
	}
	tests := []struct {
		name       string
		dockerfile string
		opts       Options
		wantTarget int
		want       []stageWant
		wantErr    error
	}{
		{
			name:       "global args expand FROM",
			dockerfile: "ARG V=1\nFROM img:$V AS a\nRUN x\nFROM a\nCOPY . .\nENV A=1\n",
			opts:       Options{TargetPlatform: amd64},
			wantTarget: 1,
			want: []stageWant{
				{base: "img:1", baseStage: -1, platform: "linux/amd64", line: 2, commands: 1},
				{base: "a", baseStage: 0, platform: "linux/amd64", line: 4, commands: 2},
			},
		},
		{
			name:       "target and build arg",
			dockerfile: "ARG V=1\nFROM --platform=$BUILDPLATFORM img:$V AS build\nFROM scratch\n",
			opts:       Options{TargetPlatform: arm64, BuildPlatform: amd64, Target: "build", Args: map[string]string{"V": "2"}},
			wantTarget: 0,
			want: []stageWant{
				{base: "img:2", baseStage: -1, platform: "linux/amd64", line: 2},
				{base: "scratch", baseStage: -1, platform: "linux/arm64", line: 3},
			},
		},
		{name: "unknown target", dockerfile: "FROM scratch\n", opts: Options{Target: "x"}, wantErr: ErrUnknownTarget},
		{name: "cycle", dockerfile: "FROM scratch AS a\nCOPY --from=b / /\nFROM scratch AS b\nCOPY --from=a / /\n", wantErr: errCycle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPlan([]byte(tt.dockerfile), "", tt.opts)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Target != tt.wantTarget || len(p.Stages) != len(tt.want) {
				t.Fatalf("target %d, %d stages; want %d, %d", p.Target, len(p.Stages), tt.wantTarget, len(tt.want))
			}
			for i, w := range tt.want {
				s := p.Stages[i]
				got := stageWant{s.Base, s.BaseStage, platform.Format(s.Platform), s.Line, len(s.Commands)}
				if got != w {
					t.Errorf("stage %d = %+v, want %+v", i, got, w)
				}
			}
		})
	}
}

func TestPlanStageIndex(t *testing.T) {
	p, err := NewPlan([]byte("FROM scratch AS Build\nFROM scratch\n"), "", Options{TargetPlatform: amd64})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		byIndex bool
		want    int
	}{
		{"build", false, 0},
		{"BUILD", false, 0},
		{"1", true, 1},
		{"1", false, -1},
		{"7", true, -1},
		{"alpine", true, -1},
	}
	for _, tt := range tests {
		if got := p.StageIndex(tt.name, tt.byIndex); got != tt.want {
			t.Errorf("StageIndex(%q, %v) = %d, want %d", tt.name, tt.byIndex, got, tt.want)
		}
	}
}
