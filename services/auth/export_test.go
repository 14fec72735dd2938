package auth

import "time"

// CachedTokens is how many verified tokens s holds in memory.
func CachedTokens(s *Store) int {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	return len(s.cache.entries)
}

// SetListenRetry sets the pause before the listener reconnects.
func SetListenRetry(s *Store, d time.Duration) { s.listenRetry = d }

// ListenerApplication names the listener's connection in pg_stat_activity.
const ListenerApplication = listenerApplication
