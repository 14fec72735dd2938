package events

// definitions is the table of every event type this binary writes and reads,
// with the schema version it writes and the upcasters from older versions.
// Adding a field that older events lack needs no new version when its zero
// value is right; renaming or re-meaning one does, with an upcaster.
func definitions() []definition {
	return []definition{
		{payload: ISCMRegistered{}, version: 1},
		{payload: MemberJoined{}, version: 1},
		{payload: MemberStatusChanged{}, version: 1},
		{payload: MemberLeft{}, version: 1},
	}
}
