package access

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/posd-dev/posd/terminal/operators"
)

// The headers that carry a person's own credential with a request, for an operation the
// calling process's role does not allow (a supervisor's void at a till running as a
// cashier). The password travels only over posd's socket or mutual TLS, and is never
// logged.
const (
	OperatorHeader = "Posd-Operator"
	PasswordHeader = "Posd-Operator-Password"
)

// ErrNoCredential means the request carried no operator credential: the caller's roles
// alone decide.
var ErrNoCredential = errors.New("access: no operator credential")

// OperatorCredentials is the Credentials of posd's operators file: an operator id and
// password (OperatorHeader, PasswordHeader) checked by operators.Store.Verify (slow hash
// under a token key, one failure a second, locked after 5), whose operator must hold one
// of the roles the operation needs.
//
// Safe for concurrent use (operators.Store is).
type OperatorCredentials struct {
	Store *operators.Store
}

// Verify implements Credentials.
func (o OperatorCredentials) Verify(ctx context.Context, r *http.Request, op Op, need []Role) (string, error) {
	id, pw := r.Header.Get(OperatorHeader), r.Header.Get(PasswordHeader)
	if id == "" && pw == "" {
		return "", ErrNoCredential
	}
	who, err := o.Store.Verify(ctx, id, pw)
	if err != nil {
		return "", err
	}
	if !slices.Contains(need, Role(who.Role)) {
		return "", fmt.Errorf("operator %s is a %s; %s needs %s", who.ID, who.Role, op, rolesText(need))
	}
	return "operator " + who.ID, nil
}
