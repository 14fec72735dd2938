package main

// Demonstration data for `gcmtrack run --demo`.
//
// The questionnaire answers below are DEMONSTRATION DATA reconstructed from
// what IOM's 2019 review of ISCMs and the Global Compact reports about its
// eleven respondents (section 3: Figures 2-8 and the text around them). They
// are not the ISCMs' actual answers: where the review gives a count without
// names, or no detail at all, the values are plausible choices that keep the
// review's totals. The member lists come from the catalog's demonstration
// lists (events/catalog/data/iscm-members.json), and the manual records are
// illustrative only.
//
// Everything goes through the command services, as a client's requests
// would: the same validation, the same events. Loading is idempotent: each
// step first looks at its aggregate and skips what is already there, and
// every command carries a deterministic message id, so a concurrent load
// by another instance lands on the same events or conflicts harmlessly.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"gcmtrack/events"
	"gcmtrack/events/catalog"
	"gcmtrack/services/command"
	"gcmtrack/services/eventstore"
	"gcmtrack/services/records"
	"gcmtrack/services/registry"
)

// demoCycle is the reporting cycle of the review's survey and interviews.
const demoCycle = 2018

// demoNote accompanies the demonstration data's lifecycle transitions.
const demoNote = "demonstration data"

// demoStats counts what one load added. When two loads run at once, a
// command both sent with the same message id may count in both.
type demoStats struct {
	MembersJoined  int // member and observer States joined to ISCMs
	AnswerSets     int // questionnaire answer sets stored
	RecordsCreated int // manual records created
}

// loadDemo loads the demonstration data set through the command services:
// the catalog's demonstration member lists, the 2018 questionnaire and
// interview answers (published), and a few manual records. The catalog's
// ISCMs must be registered. A second load adds nothing; what a concurrent
// load stored first counts as done.
func loadDemo(ctx context.Context, reg *registry.Service, rec *records.Service, cat *catalog.Catalog, log *slog.Logger) (demoStats, error) {
	var st demoStats
	var err error
	if st.MembersJoined, err = joinDemoMembers(ctx, reg, cat); err != nil {
		return st, err
	}
	if st.AnswerSets, err = answerDemoQuestionnaires(ctx, rec); err != nil {
		return st, err
	}
	if st.RecordsCreated, err = createDemoRecords(ctx, rec); err != nil {
		return st, err
	}
	log.Info("demonstration data loaded", "members_joined", st.MembersJoined,
		"answer_sets", st.AnswerSets, "records_created", st.RecordsCreated)
	return st, nil
}

// demoEnabled is the default of --demo: the GCM_DEMO environment variable
// as a boolean (1, true, …), false when unset or unparsable.
func demoEnabled() bool {
	on, err := strconv.ParseBool(os.Getenv("GCM_DEMO"))
	return err == nil && on
}

// demoMeta is the metadata of the demonstration command identified by key.
func demoMeta(key string) command.Meta {
	return command.Meta{Actor: "demo", CorrelationID: "demo", MsgID: "demo:" + key}
}

// demoDoneByOther reports whether a command failed only because another
// writer (a concurrent load) changed the aggregate first.
func demoDoneByOther(err error) bool {
	var conflict *eventstore.ConflictError
	return errors.As(err, &conflict) || errors.Is(err, command.ErrStateConflict)
}

// joinDemoMembers joins the members and observers of the catalog's
// demonstration lists that the ISCMs do not have yet.
func joinDemoMembers(ctx context.Context, reg *registry.Service, cat *catalog.Catalog) (int, error) {
	slugs := make([]string, 0, len(cat.DemoMembers))
	for slug := range cat.DemoMembers {
		slugs = append(slugs, slug)
	}
	slices.Sort(slugs)
	n := 0
	for _, slug := range slugs {
		a, err := reg.Load(ctx, slug)
		if err != nil {
			return n, err
		}
		present := a.Members
		list := cat.DemoMembers[slug]
		for _, j := range []struct {
			states []string
			status string
		}{{list.Members, events.StatusMember}, {list.Observers, events.StatusObserver}} {
			for _, state := range j.states {
				if _, ok := present[state]; ok {
					continue
				}
				_, err := reg.Join(ctx, slug, registry.AddMember{State: state, Status: j.status}, demoMeta("join:"+slug+":"+state))
				switch {
				case err == nil:
					n++
				case demoDoneByOther(err):
				default:
					return n, fmt.Errorf("demo: join %s to %s: %w", state, slug, err)
				}
				present[state] = j.status
			}
		}
	}
	return n, nil
}

// answerDemoQuestionnaires stores the answer sets not stored yet and
// publishes them. Answers someone else saved as a draft are left alone.
func answerDemoQuestionnaires(ctx context.Context, rec *records.Service) (int, error) {
	n := 0
	for _, d := range demoAnswers() {
		id := events.QuestionnaireID(demoCycle, d.channel)
		key := "questionnaire:" + d.iscm + ":" + id
		r, err := rec.Load(ctx, d.iscm, events.KindQuestionnaire, id)
		if err != nil {
			return n, err
		}
		switch {
		case !r.Exists:
			_, err := rec.Answer(ctx, d.iscm, demoCycle, d.channel, d.answers, false, demoMeta(key))
			switch {
			case err == nil:
				n++
			case demoDoneByOther(err):
			default:
				return n, fmt.Errorf("demo: answers of %s (%s): %w", d.iscm, id, err)
			}
		case r.Status == events.StatusDraft:
			continue
		}
		if err := advanceDemo(ctx, rec, d.iscm, events.KindQuestionnaire, id, events.StatusPublished, key); err != nil {
			return n, err
		}
	}
	return n, nil
}

// createDemoRecords creates the manual records not created yet and brings
// them to their status.
func createDemoRecords(ctx context.Context, rec *records.Service) (int, error) {
	n := 0
	for _, d := range demoRecords() {
		key := "record:" + d.iscm + ":" + d.key
		meta := demoMeta(key)
		kind, id := d.content.RecordKind(), demoRecordID(meta.MsgID)
		r, err := rec.Load(ctx, d.iscm, kind, id)
		if err != nil {
			return n, err
		}
		if !r.Exists {
			res, err := rec.Create(ctx, d.iscm, d.content, meta)
			switch {
			case err == nil && res.ID != id:
				return n, fmt.Errorf("demo: %s %s of %s was created as %s, not %s: the record id derivation changed", kind, d.key, d.iscm, res.ID, id)
			case err == nil:
				n++
			case demoDoneByOther(err):
			default:
				return n, fmt.Errorf("demo: %s %s of %s: %w", kind, d.key, d.iscm, err)
			}
		}
		if err := advanceDemo(ctx, rec, d.iscm, kind, id, d.status, key); err != nil {
			return n, err
		}
	}
	return n, nil
}

// demoRecordID is the id records.Service.Create gives a new record whose
// command carries msgID: a name-based UUID of the message id, so that a
// retry lands on the same aggregate. createDemoRecords checks it against
// the id Create reports.
func demoRecordID(msgID string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("gcmtrack:record:"+msgID)).String()
}

// advanceDemo submits and publishes a record until it reaches target (draft,
// submitted or published). A record that another writer moved elsewhere
// (withdrawn, say) is left as it is.
func advanceDemo(ctx context.Context, rec *records.Service, iscm, kind, id, target, key string) error {
	// Each round makes one transition or finds another writer's; four
	// rounds cover both steps even when each conflicts once.
	for range 4 {
		r, err := rec.Load(ctx, iscm, kind, id)
		if err != nil {
			return err
		}
		var action string
		switch {
		case r.Status == events.StatusDraft && target != events.StatusDraft:
			action = records.ActionSubmit
		case r.Status == events.StatusSubmitted && target == events.StatusPublished:
			action = records.ActionPublish
		default:
			return nil
		}
		_, err = rec.Transition(ctx, iscm, kind, id, action, demoNote, demoMeta(key+":"+action))
		if err != nil && !demoDoneByOther(err) {
			return fmt.Errorf("demo: %s %s %s of %s: %w", action, kind, id, iscm, err)
		}
	}
	return fmt.Errorf("demo: %s %s of %s did not reach %s: it keeps changing", kind, id, iscm, target)
}

// demoDate is a calendar date of the demonstration data.
func demoDate(year int, month time.Month, day int) events.Date {
	return events.DateOf(time.Date(year, month, day, 0, 0, 0, 0, time.UTC))
}

// demoAnswer is one ISCM's answer set for the demonstration cycle.
type demoAnswer struct {
	iscm    string
	channel string
	answers events.Answers
}

// demoAnswers reconstructs the answers of the review's eleven respondents:
// eight questionnaires and three telephone interviews (SACM took part in
// both). Demonstration data, not the ISCMs' actual answers.
//
// What the review reports and the answers keep:
//   - five questionnaire respondents have a formal position (Figure 2; the
//     2018 column of the review's table of positions names ARCP, the Rabat
//     Process, IGAD-RCP, the Puebla Process and SACM), the others have none;
//     CMC plans to refine one after the adoption, and IGC does not generally
//     take formal positions;
//   - the positions together address themes T2, T4, T5 and T6, principles
//     2, 4, 5, 6 and 7 and objectives 1, 2, 5, 7, 10, 16 and 23 (Figure 3);
//   - every ISCM with a position has the GCM as a standard agenda item or
//     plans to, and so do two of those without (Figure 4);
//   - the Puebla Process and CMC already have an action plan, six do not
//     know yet (Figure 5);
//   - the capacity-building forms each ISCM reported (Figure 7);
//   - eight of the respondents have partnerships (Figure 8); SACM's are
//     those the review names, the others' are plausible for each ISCM;
//   - the four hindering factors, raised in the interviews;
//   - the SDG practices of ARCP, PAFOM and the Puebla Process, and the
//     review's examples of how the GCM influenced the ISCMs' work.
//
// Dates are illustrative: the review was carried out in late 2018.
func demoAnswers() []demoAnswer {
	no := false
	yes := true
	q := events.ChannelQuestionnaire
	return []demoAnswer{
		{"arcp", q, events.Answers{
			SubmittedOn: demoDate(2018, time.October, 29),
			Position: &events.Position{
				Status: "yes", RevisedAfterAgreedOutcome: &no,
				Themes: []string{"T2", "T5", "T6"}, Principles: []int{2, 5, 6}, Objectives: []int{1, 2, 7, 23},
			},
			AgendaItem: "yes",
			Influence:  "Reflected in the ISCM's work.",
			ActionPlan: &events.QActionPlan{Status: "not_known"},
			CapacityBuilding: []events.QActivity{
				{Title: "Information notes on the Global Compact for Member States", Form: "information_note"},
				{Title: "Training workshops on the Global Compact and its implementation", Form: "training_workshop"},
				{Title: "Special sessions on the Global Compact on the agenda of the regular meetings", Form: "special_session"},
			},
			Assistance: "ISCMs should be involved in reviewing implementation of the Global Compact within their regions, in cooperation with the relevant United Nations agencies and commissions.",
			SDGPractices: []string{
				"The ISCM's role in realizing the migration-related SDG targets can apply to the Global Compact: raising awareness, improving the knowledge base on migration-related targets, coordinating the migration policies of the Arab countries, enhancing regional dialogue, implementing training programmes, and sharing information, experiences and best practices.",
			},
			Partnerships: []events.QPartnership{
				{Partner: "IOM", Category: "igo", Nature: "technical support to the ISCM"},
				{Partner: "Economic and Social Commission for Western Asia (ESCWA)", Category: "un_regional_commission", Nature: "regional review of Global Compact implementation"},
			},
		}},
		{"cmc", q, events.Answers{
			SubmittedOn: demoDate(2018, time.November, 2),
			Position:    &events.Position{Status: "no", PlansRefinement: &yes},
			AgendaItem:  "planned",
			Influence:   "Used as a reference framework for priority-setting.",
			ActionPlan:  &events.QActionPlan{Status: "already_done"},
			CapacityBuilding: []events.QActivity{
				{Title: "Awareness-raising and capacity-building opportunities across government agencies", Form: "awareness_raising"},
			},
			WholeOfGovernment: []events.QActivity{
				{Title: "Awareness-raising and capacity-building across government agencies (whole-of-government approach)"},
			},
			Assistance: "Offer awareness-raising and capacity-building opportunities across government agencies through a whole-of-government approach.",
			Partnerships: []events.QPartnership{
				{Partner: "IOM", Category: "igo", Nature: "technical support to the consultations"},
				{Partner: "Caribbean Community (CARICOM)", Category: "regional_economic_organization", Nature: "regional coordination"},
			},
		}},
		{"eap-panel", q, events.Answers{
			SubmittedOn: demoDate(2018, time.October, 31),
			Position:    &events.Position{Status: "no"},
			AgendaItem:  "not_known",
			Influence:   "Reflected in the ISCM's work.",
			ActionPlan:  &events.QActionPlan{Status: "not_known"},
			Assistance:  "Meetings could offer an opportunity to informally exchange information among participating countries about the respective progresses under the GCM, at the technical level. Representatives of participating countries could as well find useful to raise and discuss eventual challenges encountered by States while implementing the GCM, including challenges at regional level.",
		}},
		{"rabat-process", q, events.Answers{
			SubmittedOn: demoDate(2018, time.November, 5),
			Position: &events.Position{
				Status: "yes", RevisedAfterAgreedOutcome: &no,
				Themes: []string{"T2", "T5", "T6"}, Principles: []int{2, 4, 6}, Objectives: []int{2, 5, 10, 23},
			},
			AgendaItem: "yes",
			ActionPlan: &events.QActionPlan{Status: "not_known"},
			Partnerships: []events.QPartnership{
				{Partner: "International Centre for Migration Policy Development (ICMPD)", Category: "igo", Nature: "secretariat of the dialogue"},
				{Partner: "Economic Community of West African States (ECOWAS)", Category: "regional_economic_organization", Nature: "participation in the dialogue"},
			},
		}},
		{"igad-rcp", q, events.Answers{
			SubmittedOn: demoDate(2018, time.November, 7),
			Position: &events.Position{
				Status: "yes", RevisedAfterAgreedOutcome: &no,
				Themes: []string{"T2", "T4", "T5"}, Principles: []int{2, 5, 6}, Objectives: []int{1, 2, 7, 16, 23},
			},
			AgendaItem: "planned",
			Influence:  "Provision of technical support to Member States.",
			ActionPlan: &events.QActionPlan{Status: "not_known"},
			DataExchange: []events.QActivity{
				{Title: "Sharing of migration data among Member States"},
			},
			CapacityBuilding: []events.QActivity{
				{Title: "Support to Member States on migration data collection, analysis and exchange", Form: "data_support"},
			},
			Assistance: "Provide technical support to Member States and facilitate data sharing between them.",
			Partnerships: []events.QPartnership{
				{Partner: "IOM", Category: "igo", Nature: "technical support"},
				{Partner: "African Union Commission", Category: "igo", Nature: "continental coordination"},
			},
		}},
		{"igc", q, events.Answers{
			SubmittedOn: demoDate(2018, time.November, 8),
			Position: &events.Position{
				Status:  "no",
				Pursuit: "The IGC does not generally take formal positions; it shares information about its Participating States' individual positions.",
			},
			AgendaItem: "yes",
			Influence:  "Included in the work programme.",
			ActionPlan: &events.QActionPlan{Status: "not_known"},
		}},
		{"puebla-process", q, events.Answers{
			SubmittedOn: demoDate(2018, time.November, 9),
			Position: &events.Position{
				Status: "yes", RevisedAfterAgreedOutcome: &no,
				Themes: []string{"T2", "T4", "T5", "T6"}, Principles: []int{2, 4, 5, 6, 7}, Objectives: []int{1, 2, 5, 7, 10, 16, 23},
			},
			AgendaItem: "yes",
			Influence:  "Included as an agenda item at meetings.",
			ActionPlan: &events.QActionPlan{Status: "already_done"},
			CapacityBuilding: []events.QActivity{
				{Title: "Facilitating dialogue between Member States", Form: "dialogue_facilitation"},
				{Title: "Technical secretariat support to Member States", Form: "technical_secretariat"},
				{Title: "Active participation of civil society organizations", Form: "civil_society_participation"},
			},
			Assistance: "Promote cooperation and coordination to obtain, use and strengthen existing financial, material and human resources effectively.",
			SDGPractices: []string{
				"A proposal of regional lines of action for mainstreaming migration in the implementation of the 2030 Agenda for Sustainable Development (in development), which could link up with implementation of the Global Compact.",
			},
			Partnerships: []events.QPartnership{
				{Partner: "South American Conference on Migration", Category: "iscm", Nature: "bilateral contact since 2017"},
				{Partner: "IOM", Category: "igo", Nature: "technical secretariat"},
				{Partner: "Regional Network of Civil Society Organizations for Migration", Category: "ngo_civil_society", Nature: "participation in the meetings"},
			},
		}},
		{"sacm", q, events.Answers{
			SubmittedOn: demoDate(2018, time.November, 12),
			Position: &events.Position{
				Status: "yes", RevisedAfterAgreedOutcome: &no,
				Themes: []string{"T2", "T4", "T6"}, Principles: []int{2, 6, 7}, Objectives: []int{5, 7, 16, 23},
			},
			AgendaItem: "yes",
			Influence:  "Included as an agenda item at meetings.",
			ActionPlan: &events.QActionPlan{Status: "not_known"},
			CapacityBuilding: []events.QActivity{
				{Title: "Technical secretariat support to Member States", Form: "technical_secretariat"},
				{Title: "Face-to-face and online meetings", Form: "online_meeting"},
			},
			Assistance: "Countries present their effective practices, which can then be shared and implemented; a technical secretariat and face-to-face and online meetings are essential tools in support of Member States.",
			Partnerships: []events.QPartnership{
				{Partner: "Puebla Process", Category: "iscm", Nature: "first bilateral contact in 2017"},
				{Partner: "International Labour Organization", Category: "igo", Nature: "strategic partnership"},
				{Partner: "IOM", Category: "igo", Nature: "strategic partnership"},
				{Partner: "Office of the United Nations High Commissioner for Human Rights", Category: "igo", Nature: "strategic partnership"},
				{Partner: "UNICEF", Category: "igo", Nature: "strategic partnership"},
				{Partner: "Economic Commission for Latin America and the Caribbean", Category: "un_regional_commission", Nature: "cooperation"},
				{Partner: "International Committee of the Red Cross", Category: "ngo_civil_society", Nature: "cooperation with civil society organizations"},
			},
		}},
		{"abu-dhabi-dialogue", events.ChannelInterview, events.Answers{
			SubmittedOn: demoDate(2018, time.November, 14),
			Assistance:  "An informal, State-led and voluntary dialogue for exchanging best practices and building capacities, with peer-to-peer learning and progress; a compliance architecture would lead to non-participation.",
			Partnerships: []events.QPartnership{
				{Partner: "IOM", Category: "igo", Nature: "support to the dialogue"},
				{Partner: "Migrant Forum in Asia", Category: "ngo_civil_society", Nature: "side-event on mobilizing RCPs for Global Compact implementation (September 2018)"},
			},
			HinderingFactors: []string{"no_mandate", "unclear_coordination"},
		}},
		{"pafom", events.ChannelInterview, events.Answers{
			SubmittedOn: demoDate(2018, time.November, 16),
			Assistance:  "Help Member States translate international commitments into regional and national contexts by developing policy recommendations that are easily adapted to context: an open and frank discussion in an informal setting states the problems and explores solutions, which are then tabled in the formal processes for agreement and endorsement. Capacity-building and knowledge management are key.",
			SDGPractices: []string{
				"As with the SDGs, the Global Compact does not apply equally to all contexts: implementation must adapt and be flexible, without a one-size-fits-all approach. It remains to define the best set-up for implementation, identify the key characteristics of an effective practice, and adjust the existing ISCMs or establish new mechanisms for implementation and review.",
			},
			Partnerships: []events.QPartnership{
				{Partner: "African Union Commission", Category: "igo", Nature: "convenes the forum"},
				{Partner: "IOM", Category: "igo", Nature: "support to the forum"},
				{Partner: "Economic Commission for Africa", Category: "un_regional_commission", Nature: "cooperation"},
			},
			HinderingFactors: []string{"different_speeds"},
		}},
		{"sacm", events.ChannelInterview, events.Answers{
			SubmittedOn:      demoDate(2018, time.November, 19),
			Assistance:       "Countries could present their effective practices, which could then be shared and implemented; any international organization may indicate its interest in working together.",
			HinderingFactors: []string{"low_priority"},
		}},
	}
}

// demoRecord is one manual record of the demonstration data and the status
// to bring it to.
type demoRecord struct {
	iscm    string
	key     string // stable within the ISCM: the record's identity across loads
	content events.Content
	status  string
}

// demoRecords are a few illustrative records, so the timeline and feeds
// have more than questionnaires. They describe no actual events (activities
// say so in their summary, submissions in their title) and name no States.
func demoRecords() []demoRecord {
	const summary = "Demonstration record: illustrative, not an actual event."
	return []demoRecord{
		{"puebla-process", "workshop-2019", events.Activity{
			Kind: "capacity_building", Form: "training_workshop",
			Title:     "Regional workshop on implementing the Global Compact",
			StartDate: demoDate(2019, time.June, 11), EndDate: demoDate(2019, time.June, 12),
			Objectives: []int{1, 7, 23}, Principles: []int{2, 6}, Partners: []string{"IOM"}, Summary: summary,
		}, events.StatusPublished},
		{"puebla-process", "gfmd-2020", events.Submission{
			Forum: "gfmd", Title: "Demonstration: contribution of the Regional Conference on Migration to the GFMD Summit",
			Date: demoDate(2020, time.January, 21),
		}, events.StatusPublished},
		{"sacm", "online-meeting-2020", events.Activity{
			Kind: "capacity_building", Form: "online_meeting",
			Title:      "Online technical meeting on effective practices for Global Compact implementation",
			StartDate:  demoDate(2020, time.September, 23),
			Objectives: []int{5, 16, 23}, Summary: summary,
		}, events.StatusPublished},
		{"sacm", "imrf-2022", events.Submission{
			Forum: "imrf", Title: "Demonstration: contribution of the South American Conference on Migration to the International Migration Review Forum",
			Date: demoDate(2022, time.May, 17),
		}, events.StatusPublished},
		{"igad-rcp", "data-workshop-2019", events.Activity{
			Kind: "capacity_building", Form: "data_support",
			Title:      "Regional workshop on migration data collection, analysis and sharing",
			StartDate:  demoDate(2019, time.October, 8),
			Objectives: []int{1}, Partners: []string{"IOM"}, Summary: summary,
		}, events.StatusPublished},
		{"igad-rcp", "imrf-2022", events.Submission{
			Forum: "imrf", Title: "Demonstration: contribution of the IGAD Regional Consultative Process to the International Migration Review Forum",
			Date: demoDate(2022, time.May, 17),
		}, events.StatusDraft},
		{"arcp", "special-session-2019", events.Activity{
			Kind: "capacity_building", Form: "special_session",
			Title:      "Special session on the Global Compact at the regular meeting",
			StartDate:  demoDate(2019, time.March, 26),
			Objectives: []int{2, 23}, Principles: []int{2}, Summary: summary,
		}, events.StatusPublished},
		{"arcp", "gfmd-2018", events.Submission{
			Forum: "gfmd", Title: "Demonstration: contribution of the Arab Regional Consultative Process to the GFMD Summit",
			Date: demoDate(2018, time.December, 5),
		}, events.StatusPublished},
	}
}
