package session

// State is where a session is in its life. The transitions are:
//
//	Pending --auth ok--> Active --exp--> Expired --auth ok--> Active
//	any state --close--> Closed
//
// Pending sessions have not authenticated: nothing they send reaches the
// application. Expired sessions keep their socket open and buffer outbound
// application messages until a fresh token arrives or the grace period ends.
type State uint8

// The session states.
const (
	Pending State = iota
	Active
	Expired
	Closed
)

var stateNames = [...]string{"pending", "active", "expired", "closed"}

// String returns the state's lower-case name.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "invalid"
}
