package events

// Aggregate kinds: the third token of a subject.
const (
	// KindISCM is the ISCM aggregate: its registration and membership.
	KindISCM = "iscm"
)

// Membership statuses of a State in an ISCM.
const (
	StatusMember   = "member"
	StatusObserver = "observer"
)

// ISCMRegistered: an inter-State consultation mechanism was added to the
// registry. Its slug is the aggregate id and the tenant of its subjects.
type ISCMRegistered struct {
	Slug      string `json:"slug"`
	Name      string `json:"name"`
	ShortName string `json:"short_name"`
	Kind      string `json:"kind"`   // rcp, irf or global
	Region    string `json:"region"` // as the catalog names it
}

// EventType implements Payload.
func (ISCMRegistered) EventType() string { return "iscm.registered" }

// MemberJoined: a State became a member or observer of the ISCM.
type MemberJoined struct {
	State  string `json:"state"`  // ISO 3166-1 alpha-3
	Status string `json:"status"` // member or observer
	Since  Date   `json:"since"`
}

// EventType implements Payload.
func (MemberJoined) EventType() string { return "iscm.member_joined" }

// MemberStatusChanged: a participating State moved between member and
// observer.
type MemberStatusChanged struct {
	State  string `json:"state"`
	Status string `json:"status"`
	Since  Date   `json:"since"`
}

// EventType implements Payload.
func (MemberStatusChanged) EventType() string { return "iscm.member_status_changed" }

// MemberLeft: a State stopped taking part in the ISCM.
type MemberLeft struct {
	State string `json:"state"`
	Until Date   `json:"until"`
}

// EventType implements Payload.
func (MemberLeft) EventType() string { return "iscm.member_left" }
