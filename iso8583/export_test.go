package iso8583

// LetIdleGo lets idle backup hosts go now, as the Failover's background sweep does every
// IdleClose/4: tests drive it on an injected clock.
func (f *Failover) LetIdleGo() int { return f.letIdleGo() }
