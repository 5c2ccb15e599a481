package firmware

import "time"

// SetFailpoint makes m call fp at each named step of an install (tests
// only: the crash tests kill the process there).
func SetFailpoint(m *Manager, fp func(name string)) { m.failpoint = fp }

// VerifyMetadata runs the metadata verification of a bundle's files (by
// their path in the bundle) against the trusted root file, for fuzzing.
func VerifyMetadata(root []byte, files map[string][]byte, now time.Time) error {
	t, err := newTrust(root)
	if err != nil {
		return err
	}
	m := &bundleMeta{}
	for name, b := range files {
		if err := m.add(name, b); err != nil {
			return err
		}
	}
	_, _, err = t.update(m, now)
	return err
}

// ParseEventLog parses an event log file's bytes, for fuzzing.
func ParseEventLog(b []byte) ([]Event, error) {
	evs, _, _, err := parseEvents(b, 0)
	return evs, err
}
