package wsauth

// The defaults of Options, for the tests of package wsauth_test.
const (
	DefaultAuthTimeout     = defaultAuthTimeout
	DefaultMaxPending      = defaultMaxPending
	DefaultMaxPendingPerIP = defaultMaxPendingPerIP
	DefaultMaxPreAuthFrame = defaultMaxPreAuthFrame
	DefaultMaxFrame        = defaultMaxFrame
	DefaultReauthLead      = defaultReauthLead
	DefaultReauthGrace     = defaultReauthGrace
)
