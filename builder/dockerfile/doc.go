// Package dockerfile is kiln's Dockerfile front end. It reads a Dockerfile with
// buildkit's parser (so directives, heredocs, escapes and instruction syntax
// behave exactly as `docker build` has them) and evaluates it the way buildkit
// does: global ARGs and the automatic platform ARGs in FROM, stages named with
// AS, --target selecting only the stages it needs.
//
// For now it answers the question `kiln warm` asks: which images must be in the
// cache to build this Dockerfile for this platform?
//
//	imgs, err := dockerfile.BaseImages(data, "Dockerfile", dockerfile.Options{
//		Args:           map[string]string{"GO_VERSION": "1.22"},
//		Target:         "runtime",
//		TargetPlatform: platform.MustParse("linux/arm64"),
//	})
//	for _, img := range imgs {
//		fmt.Println(img.Ref, platform.Format(img.Platform)) // golang:1.22 linux/arm64 ...
//	}
//
// The builder asks for the whole evaluated file with NewPlan: every stage with
// its FROM expanded, the target, and the ARG scope of the FROM lines.
//
//	plan, err := dockerfile.NewPlan(data, "Dockerfile", opts)
//	for _, st := range plan.Stages {
//		fmt.Println(st.Base, st.BaseStage, len(st.Commands))
//	}
//
// Errors about the Dockerfile are *Error values carrying the file and line:
//
//	var derr *dockerfile.Error
//	if errors.As(err, &derr) {
//		fmt.Println(derr.Line)
//	}
package dockerfile
