package firmware

import "fmt"

// VerifyRole checks that file, a metadata envelope ({"signed": ..., "signatures": [...]}),
// is signed by a threshold of the keys that the root metadata file rootFile (as
// Options.TrustedRoot; it must be signed by its own root keys) gives role, and returns the
// signed body byte for byte. Other signed files than firmware metadata (the EMV parameter
// file, signed by the targets role) use it to share firmware's trust roots. Errors wrap
// ErrFormat or ErrSignature. The root's expiry is not checked here.
func VerifyRole(rootFile []byte, role string, file []byte) ([]byte, error) {
	t, err := newTrust(rootFile)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	r, ok := t.root.Roles[role]
	if !ok || r.Threshold < 1 {
		return nil, fmt.Errorf("the trusted root has no role %q: %w", role, ErrFormat)
	}
	env, err := ParseEnvelope(file)
	if err != nil {
		return nil, err
	}
	if err := verifySignatures(env, t.root.Keys, r); err != nil {
		return nil, err
	}
	return env.Signed, nil
}
