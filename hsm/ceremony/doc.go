// Package ceremony is posd's key ceremony over an hsm.Module: loading a key from clear
// components typed by its custodians, importing a TR-31 key block under a key block
// protection key, and the soft backend's key files, which hold what the soft backend is
// given so that the next start finds it. Commands (posd key) parse flags, prompt and print;
// the rules a ceremony follows for every backend live here.
//
// # Basics
//
// A Keys is the key store a ceremony works on: OnModule wraps a Module over a token (the
// token keeps its keys), OpenSoft reads the soft backend's files and loads their keys into a
// Module over a soft backend. Keys.Import imports a key block after checking that the KBPK
// exists and is one; Keys.CanLoad refuses, before any custodian types a component, what
// Keys.Load would refuse; Keys.Load combines the components, refuses an all-zero key, and
// loads it. ParseComponent and Distinct check each component as it is typed.
//
// # Caveats
//
// Load combines the components in process memory (SoftHSM has no CKM_XOR_BASE_AND_DATA),
// so the clear key is in memory until the backend holds it; it is overwritten then. The
// soft backend's files hold clear keys (mode 0600): the soft backend is for tests and demos.
// Nothing here logs or formats a key, a component or a PIN into an error.
package ceremony
