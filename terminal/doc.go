// Package terminal is the transaction state machine of posd: it takes a sale from the till,
// drives the card reader and PIN pad, has the PIN encrypted inside the secure device (package
// hsm), records the transaction's intent durably (package store) before its authorization
// goes to the acquirer (package iso8583), records the outcome, and answers with a result
// and a receipt.
//
// # The sale
//
//  1. The PIN pad shows the amount and waits for a card (Display, CardReader).
//  2. The tracks are parsed and the card checked: Luhn, expiry through the end of its month,
//     service code (terminal/card). A bad card is refused before anything goes online.
//  3. The PIN is captured and encrypted in the secure device: posd receives {block, KSN}.
//  4. A STAN is taken from the store (it survives restarts), the intent is journaled (fsync).
//  5. The authorization (0200, or 0100 when configured for dual message) is sent; the
//     response is matched by the link.
//  6. The outcome is journaled (fsync), the pad shows the result, the till gets the answer.
//
// A decline is a result, not an error. Sale returns an error only when it could not attempt
// the sale at all or could not keep its record.
//
// Nothing below terminal (hsm, iso8583, store) imports it.
package terminal
