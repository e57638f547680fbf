package cluster

import (
	"context"
	"fmt"
	"sync"

	"github.com/sluicehq/sluice/pkg/checkpoint"
)

// Standalone returns an Elector for a driver that runs alone, with a
// single-writer store such as the local directory store: it always leads,
// and its Leadership carries the zero Fence, which only single-writer stores
// accept. Leader reports advertise. Close ends outstanding terms (closes
// their Lost) and waits for nothing.
func Standalone(advertise string) Elector {
	return &standalone{advertise: advertise, terms: map[*Leadership]struct{}{}}
}

type standalone struct {
	advertise string

	mu     sync.Mutex
	closed bool
	terms  map[*Leadership]struct{}
}

func (s *standalone) Campaign(ctx context.Context, advertise string) (*Leadership, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("campaign: %w", ErrClosed)
	}
	var l *Leadership
	l = newLeadership(checkpoint.Fence{}, func(context.Context) error {
		s.mu.Lock()
		delete(s.terms, l)
		s.mu.Unlock()
		return nil
	})
	s.terms[l] = struct{}{}
	return l, nil
}

func (s *standalone) Leader(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", fmt.Errorf("leader: %w", ErrClosed)
	}
	return s.advertise, nil
}

func (s *standalone) Close(context.Context) error {
	s.mu.Lock()
	s.closed = true
	terms := s.terms
	s.terms = nil
	s.mu.Unlock()
	for l := range terms {
		l.markLost()
	}
	return nil
}
