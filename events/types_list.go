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

		{payload: Recorded[Position]{}, version: 1},
		{payload: Revised[Position]{}, version: 1},
		{payload: Recorded[AgendaItem]{}, version: 1},
		{payload: Revised[AgendaItem]{}, version: 1},
		{payload: Recorded[Stocktaking]{}, version: 1},
		{payload: Revised[Stocktaking]{}, version: 1},
		{payload: Recorded[ActionPlan]{}, version: 1},
		{payload: Revised[ActionPlan]{}, version: 1},
		{payload: MilestoneProgressed{}, version: 1},
		{payload: Recorded[Activity]{}, version: 1},
		{payload: Revised[Activity]{}, version: 1},
		{payload: Recorded[Partnership]{}, version: 1},
		{payload: Revised[Partnership]{}, version: 1},
		{payload: Recorded[Submission]{}, version: 1},
		{payload: Revised[Submission]{}, version: 1},
		{payload: Recorded[HinderingFactor]{}, version: 1},
		{payload: Revised[HinderingFactor]{}, version: 1},
		{payload: Recorded[Resource]{}, version: 1},
		{payload: Revised[Resource]{}, version: 1},
		{payload: Recorded[Expansion]{}, version: 1},
		{payload: Revised[Expansion]{}, version: 1},

		{payload: RecordSubmitted{}, version: 1},
		{payload: RecordPublished{}, version: 1},
		{payload: RecordWithdrawn{}, version: 1},

		{payload: QuestionnaireAnswered{}, version: 1},

		{payload: CycleClosed{}, version: 1},
		{payload: CycleReopened{}, version: 1},
	}
}

// RecordedContent returns the content of a recorded or revised event and
// whether the payload is one.
func RecordedContent(p Payload) (Content, bool) {
	c, ok := p.(interface{ content() Content })
	if !ok {
		return nil, false
	}
	return c.content(), true
}

// NewRecorded wraps content in its kind's recorded event.
func NewRecorded(c Content) Payload { return wrap(c, false) }

// NewRevised wraps content in its kind's revised event.
func NewRevised(c Content) Payload { return wrap(c, true) }

func wrap(c Content, revised bool) Payload {
	pick := func(rec, rev Payload) Payload {
		if revised {
			return rev
		}
		return rec
	}
	switch c := c.(type) {
	case Position:
		return pick(Recorded[Position]{c}, Revised[Position]{c})
	case AgendaItem:
		return pick(Recorded[AgendaItem]{c}, Revised[AgendaItem]{c})
	case Stocktaking:
		return pick(Recorded[Stocktaking]{c}, Revised[Stocktaking]{c})
	case ActionPlan:
		return pick(Recorded[ActionPlan]{c}, Revised[ActionPlan]{c})
	case Activity:
		return pick(Recorded[Activity]{c}, Revised[Activity]{c})
	case Partnership:
		return pick(Recorded[Partnership]{c}, Revised[Partnership]{c})
	case Submission:
		return pick(Recorded[Submission]{c}, Revised[Submission]{c})
	case HinderingFactor:
		return pick(Recorded[HinderingFactor]{c}, Revised[HinderingFactor]{c})
	case Resource:
		return pick(Recorded[Resource]{c}, Revised[Resource]{c})
	case Expansion:
		return pick(Recorded[Expansion]{c}, Revised[Expansion]{c})
	}
	return nil
}
