// Package firmware updates a posd terminal: it verifies signed firmware
// bundles the way TUF clients do, installs a system image into the inactive
// of two slots (A/B) with automatic fallback when the new slot does not
// confirm healthy, and pushes PIN pad firmware over the serial line.
//
// # Basics
//
// posd opens the state directory once, with the root metadata built into
// it, and follows the start protocol at every start:
//
//	m, err := firmware.Open("/var/lib/posd/firmware", &firmware.Options{
//		TrustedRoot: rootJSON, Model: "POSD-A7", FactoryVersion: version})
//	boot, err := m.BootAttempt(ctx) // counts this start; may fall back
//	... posd's self-test: devices answer, store opens, acquirer signs on ...
//	err = m.Confirm(ctx, "posd self-test") // or m.MarkBad(ctx, reason)
//
// (Manager.Boot does the three steps around a self-test function.) A
// technician's install (Manager.Install, from a bundle file or directory
// in Options.Inbox, an upload, or an https:// URL on Options.AllowedURLs
// downloaded under a time limit and a minimum rate) writes the inactive
// slot and makes it active but unconfirmed; posd runs it from its next
// start. If posd has not confirmed it within Options.MaxBootAttempts starts,
// or its self-test fails (MarkBad), or its image no longer hashes right,
// BootAttempt falls back to the previous slot. Manager.Rollback switches
// back by hand. Every install, fallback, rollback and PIN pad transfer,
// refused or done, is a record in the event log with who did it.
//
// The state directory holds boot.json (active slot, start count, slots),
// trust.json (the trusted root and the newest metadata versions seen),
// slot-a.img and slot-b.img (files standing in for partitions), events.log
// and a lock file. Every change is written to a temporary file, fsynced and
// renamed, so a power cut leaves the old state or the new one; an image is
// written as slot-X.img.unverified, hashed, fsynced and only then renamed.
// The tests kill (SIGKILL) an install at each of its steps and check that
// the terminal starts a whole slot afterwards.
//
// # Trust
//
// A bundle holds metadata/N.root.json (every root version), timestamp.json,
// snapshot.json, targets.json and targets/NAME (the images); package
// firmware/release and cmd/fwtool write them. Each metadata file is
// {"signed": {...}, "signatures": [{"keyid", "sig"}]}; a signature is
// Ed25519 over SignaturePrefix followed by the exact bytes of "signed". The
// checks, in order, each with its own error and test:
//
//   - Root rotation: version N+1 must be signed by a threshold of version
//     N's root keys and of its own (so keys are rotated, and revoked, by
//     signing a new root; no new posd release is needed). The newest root
//     is kept in trust.json.
//   - Threshold signatures per role from distinct trusted keys
//     (ErrSignature): a bad signature, too few, or a revoked key's.
//   - Expiry of every role (ErrExpired): the timestamp expires soonest
//     (7 days by default), so a frozen mirror or a stale USB stick is seen.
//   - Version rollback (ErrRollback): no role's metadata older than the
//     newest accepted, nor the same version with other contents.
//   - Consistency (ErrMismatch): timestamp names snapshot.json and snapshot
//     names targets.json by version, length and SHA-256, so files of two
//     releases cannot be mixed.
//   - The image (ErrLength, ErrHash): its signed length, capped by
//     Options.MaxImageSize before anything is read, and its SHA-256,
//     checked while it streams.
//   - Beyond TUF: the image's version must be higher than the installed
//     one (ErrOldVersion) and list this terminal's model (ErrHardware).
//
// A refused bundle changes nothing on disk but one record in the event log.
//
// Why not github.com/theupdateframework/go-tuf/v2: measured with Go 1.26,
// CGO_ENABLED=0, -trimpath, stripped (-ldflags=-s -w). A small main that
// verifies a root, timestamp, snapshot and targets file and one target with
// go-tuf v2.4.2 (trustedmetadata) is 6.82 MB on linux/arm (GOARM=7) and
// links 209 packages from 11 modules (sigstore, go-containerregistry,
// protobuf, go-securesystemslib, x/crypto, ...); the same main on the
// standard library alone (encoding/json, crypto/ed25519, crypto/sha256) is
// 2.23 MB. In posd itself, this package with fwapi and the PIN pad commands
// adds 0.26 MB on linux/arm (7.86 -> 8.13 MB) and 0.33 MB on linux/arm64
// (7.54 -> 7.86 MB); linking go-tuf's verifier as well would add another
// 3.80 MB (arm) and 3.74 MB (arm64). The verifier here is 32 kB of that
// code. posd runs on small ARM devices, so the verifier is our own, in the
// format above (TUF's roles and rules, not TUF's canonical-JSON wire
// format), and each property has its own test.
//
// # PIN pad firmware
//
// PushPadImage sends an image over a PadLink (implemented by
// *abecs.Client with the FWI, FWS, FWB and FWE commands of
// terminal/abecs) in blocks of up to 1998 bytes, each with a CRC-32 on top
// of the frame's CRC-16 and acknowledged with the count of bytes the pad
// holds. After a dropped line (PadOptions.Redial) or a block the pad
// refuses, it asks the pad how much it holds and resumes there; at the end
// it checks the SHA-256 the pad reports. Manager.InstallPad does that for a
// bundle's PIN pad image, with the same verification as Install and the
// pad's own model and version for the hardware and anti-rollback checks.
//
// # Caveats
//
//   - The Manager does what a bootloader's boot counter does (U-Boot
//     bootcount, RAUC, Mender); it cannot start a slot by itself. On a
//     device, the boot script starts the slot boot.json names; in posd's
//     own tests and demos the slots are files.
//   - An unconfirmed slot is hashed in full at each of its starts (64 MiB
//     in about 40 ms on SHA-NI hardware; far longer on ARMv7 without SHA
//     instructions); a confirmed slot only has its length checked.
//   - The clock matters: expiry is checked against Options.Now. A terminal
//     whose clock is far off refuses valid bundles (ErrExpired) or accepts
//     stale ones until they expire by its clock.
//   - The event log's chain shows a changed, removed or inserted line, not
//     lines cut off its end: copy records elsewhere as they are written
//     (Options.OnEvent).
//   - Deleting the state directory forgets the rollback floors (metadata
//     versions, rotated roots) and puts FactoryVersion back as the floor for
//     firmware versions.
//   - Installing while the active slot is unconfirmed is refused
//     (ErrNotConfirmed): it would overwrite the only known-good slot.
package firmware
