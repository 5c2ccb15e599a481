package card

// ScanPANs returns, masked, every run of 13 to 19 decimal digits in text that passes the
// Luhn check: what a full PAN leaked into a log or output looks like. A run is delimited by
// non-digits; runs longer than 19 digits are searched for any 13 to 19 digit window that
// passes, since a PAN may be glued to other digits. Tests use it to prove that output
// carries no PAN; a random digit run passes Luhn one time in ten, so output should avoid
// printing long digit runs at all.
func ScanPANs(text string) []string {
	var found []string
	for i := 0; i < len(text); {
		if !isDigit(text[i]) {
			i++
			continue
		}
		j := i
		for j < len(text) && isDigit(text[j]) {
			j++
		}
		run := text[i:j]
		switch {
		case len(run) >= 13 && len(run) <= 19:
			if Luhn(run) {
				found = append(found, MaskPAN(run))
			}
		case len(run) > 19:
		windows:
			for n := 13; n <= 19; n++ {
				for k := 0; k+n <= len(run); k++ {
					if Luhn(run[k : k+n]) {
						found = append(found, MaskPAN(run[k:k+n]))
						break windows
					}
				}
			}
		}
		i = j
	}
	return found
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
