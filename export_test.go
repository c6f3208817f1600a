package wsauth

// The defaults of Options, for the tests of package wsauth_test.
const (
	DefaultAuthTimeout     = defaultAuthTimeout
	DefaultMaxPreAuthFrame = defaultMaxPreAuthFrame
	DefaultMaxFrame        = defaultMaxFrame
	DefaultReauthGrace     = defaultReauthGrace
)
