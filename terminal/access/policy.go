package access

// Op is one operation of posd's API, as the policy knows it.
//
// A plain value: safe for concurrent use when not modified.
type Op string

// The operations. Each comment names the roles that may run it.
const (
	OpPayment           Op = "payment"            // cashier, supervisor
	OpAbort             Op = "abort"              // cashier, supervisor
	OpTransactionStatus Op = "transaction status" // cashier, supervisor
	OpStatus            Op = "status"             // everyone with a role
	// OpJournalOwn is the journal filtered to one SaleID (GET /v1/journal?sale_id=): a
	// supervisor, or a cashier whose person has used that SaleID since posd started.
	OpJournalOwn       Op = "journal of one till"
	OpJournal          Op = "journal"           // supervisor
	OpVoid             Op = "void"              // supervisor
	OpRefund           Op = "refund"            // supervisor: a nexo PaymentRequest with PaymentType Refund
	OpReconcile        Op = "reconciliation"    // supervisor: the batch close
	OpTotals           Op = "totals"            // cashier, supervisor: the open batch's totals
	OpCardSearch       Op = "card search"       // supervisor
	OpSAFList          Op = "saf list"          // supervisor
	OpSAFFlush         Op = "saf flush"         // supervisor
	OpSAFPark          Op = "saf park"          // supervisor
	OpSAFUnpark        Op = "saf unpark"        // supervisor
	OpSAFDelete        Op = "saf delete"        // supervisor, dual control
	OpAudit            Op = "audit"             // supervisor
	OpAuditVerify      Op = "audit verify"      // supervisor, technician
	OpStoreCheck       Op = "store check"       // supervisor, technician
	OpConfigCheck      Op = "config check"      // technician (no route yet)
	OpKeys             Op = "keys"              // technician (no route yet)
	OpFirmware         Op = "firmware"          // technician
	OpFirmwareRollback Op = "firmware rollback" // technician, dual control
	OpParams           Op = "emv parameters"    // technician
	OpMetrics          Op = "metrics"           // technician: GET /metrics
	OpStatusPage       Op = "status page"       // technician: GET /, the status page
	// OpAuditRecent is the last audit entries (GET /v1/audit/recent), for the status page.
	OpAuditRecent Op = "recent audit" // supervisor, technician
)

// Roles returns the roles that may run o; nil for an operation the policy does not know,
// which no one may run.
func (o Op) Roles() []Role {
	switch o {
	case OpPayment, OpAbort, OpTransactionStatus, OpJournalOwn, OpTotals:
		return []Role{Cashier, Supervisor}
	case OpStatus:
		return []Role{Cashier, Supervisor, Technician}
	case OpJournal, OpVoid, OpRefund, OpReconcile, OpCardSearch, OpSAFList, OpSAFFlush,
		OpSAFPark, OpSAFUnpark, OpSAFDelete, OpAudit:
		return []Role{Supervisor}
	case OpAuditVerify, OpStoreCheck, OpAuditRecent:
		return []Role{Supervisor, Technician}
	case OpConfigCheck, OpKeys, OpFirmware, OpFirmwareRollback, OpParams, OpMetrics, OpStatusPage:
		return []Role{Technician}
	}
	return nil
}

// Dual reports whether o needs two different people: saf delete and firmware rollback.
func (o Op) Dual() bool { return o == OpSAFDelete || o == OpFirmwareRollback }

// unlimited reports whether o is exempt from the write rate limit: a till must always be
// able to sell and to ask what became of a sale.
func (o Op) unlimited() bool { return o == OpPayment || o == OpTransactionStatus }

// bindsSaleID reports whether o, run by a cashier, binds its SaleID to the person for
// OpJournalOwn.
func (o Op) bindsSaleID() bool {
	return o == OpPayment || o == OpAbort || o == OpTransactionStatus
}
