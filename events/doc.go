// Package events holds GCM Tracker's event contract: the envelope every event
// travels in, the subject each aggregate's events are stored under, the
// registry of event types with their schema versions and upcasters, and the
// payloads of the domain's facts.
//
// It does no I/O. The command side (services) creates envelopes and appends
// them to the event store; the query side (projections) decodes them back into
// typed payloads. Event JSON is a public contract, locked by golden files in
// testdata: a changed encoding must be a visible decision.
//
// Subjects are tenant first: gcm.events.<iscm>.<aggregate-kind>.<aggregate-id>,
// so NATS permissions and consumers can filter by ISCM. Facts owned by no
// single ISCM (review cycles, catalog changes) use the reserved tenant
// SystemTenant.
package events
