package layerstore

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestChainIDs follows the image spec's definition: ChainID(L0) = DiffID(L0),
// ChainID(L0|...|Ln) = sha256(ChainID(L0|...|Ln-1) + " " + DiffID(Ln)).
func TestChainIDs(t *testing.T) {
	a := v1.Hash{Algorithm: "sha256", Hex: "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"}
	b := v1.Hash{Algorithm: "sha256", Hex: "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"}
	got := ChainIDs([]v1.Hash{a, b, a})
	if got[0] != a {
		t.Fatalf("the first chain ID is the first diff_id: %v", got[0])
	}
	if got[1] == got[2] || got[1] == b || got[2] == a {
		t.Fatalf("chain IDs must depend on everything below: %v", got)
	}
	again := ChainIDs([]v1.Hash{a, b})
	if again[1] != got[1] {
		t.Fatalf("a chain's prefix must give the same IDs: %v vs %v", again, got)
	}
}
