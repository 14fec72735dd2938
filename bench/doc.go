// Package bench measures GCM Tracker against baselines it measures itself,
// in the same run and on the same machine: the replay of the event stream
// into read models, the append path from an HTTP command to JetStream, the
// load of one aggregate, the memory of a rebuild and the freshness of the
// read models.
//
// Every figure the harness prints is measured in the run that prints it;
// ratios are taken from the medians of several repetitions. Everything runs
// in the harness process or in child processes on the loopback interface: an
// embedded NATS server with JetStream, a private PostgreSQL cluster in a
// temporary directory, the API on 127.0.0.1 and, for the memory figures, the
// gcmtrack binary itself.
//
// The program is bench/cmd/gcmbench; `make bench` builds and runs it.
package bench
