// Package access decides who may call posd's local API, and what each caller may do.
//
// # Basics
//
// A caller is identified by the kernel or by a certificate, never by what a request says:
//
//   - over a unix socket, by SO_PEERCRED (uid, gid, pid), read when the connection is
//     accepted ([Guard.ConnContext]); the user's supplementary groups count too;
//   - over loopback TCP, by mutual TLS ([ServerTLS]): the client certificate must verify
//     against the configured CA, and its subject CN is the identity.
//
// A [Map] gives each identity its roles ([Cashier], [Supervisor], [Technician]) from users,
// groups and certificate subjects named in the config. Each operation ([Op]) names the roles
// that may run it. A [Guard] is an http.Handler that routes requests like http.ServeMux and
// lets one through only when its caller holds a role the operation needs. A caller with no
// role gets 403 for everything.
//
// The guard also
//
//   - rate-limits write operations per person (429), except Payment and TransactionStatus,
//     which a till must always be able to send;
//   - runs dual control ([Op.Dual]): the first request of a dual-control operation changes
//     nothing and answers 202 with an approval id; a second, different person holding a
//     needed role repeats it naming that id (header [ApprovalHeader] or body field
//     "approval") within the window, and only then does it run;
//   - audits every refusal (who, what, why) through [Options.Audit], at most
//     RatePerMinute entries per person and minute: the rest are counted into the next one,
//     so a refused caller cannot fill the store.
//
// Handlers find the authenticated caller with [CallerFrom]; [Caller.Who] is the text an
// audit entry records as "who".
//
// # Caveats
//
//   - Roles are per OS user or certificate, not per person at the till: a till application
//     serves several people under one user. [Options.Credentials] is the hook for a
//     person's own credential (a supervisor's operator id and password); it is nil (off)
//     until posd has a verifier.
//   - A cashier's view of the journal is limited to the SaleIDs its person has sent a
//     payment, abort or status request under since posd started ([OpJournalOwn]).
//   - Pending approvals, rate-limit state and SaleID bindings live in memory: a restart
//     forgets them (a pending approval must then be requested again).
package access
