package api

// ProblemFor is the problem the API answers for an error: the web pages
// show the same messages next to the fields they name.
func ProblemFor(err error) *Problem { return errProblem(err) }
