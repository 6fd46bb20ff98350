package sampleoperator

import (
	"context"
	"encoding/json"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// memoryLock is a resourcelock.Interface kept in process memory, for leader election without an
// API server. client-go's real elector runs against it (acquire, renew, release) and reports
// leader_election_master_status through controller-runtime's metrics provider.
type memoryLock struct {
	name string
	mu   sync.Mutex
	rec  *resourcelock.LeaderElectionRecord
}

func newMemoryLock(name string) *memoryLock { return &memoryLock{name: name} }

func (l *memoryLock) Get(context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rec == nil {
		return nil, nil, apierrors.NewNotFound(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, l.name)
	}
	rec := *l.rec
	raw, err := json.Marshal(rec)
	return &rec, raw, err
}

func (l *memoryLock) Create(_ context.Context, ler resourcelock.LeaderElectionRecord) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rec != nil {
		return apierrors.NewAlreadyExists(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, l.name)
	}
	l.rec = &ler
	return nil
}

func (l *memoryLock) Update(_ context.Context, ler resourcelock.LeaderElectionRecord) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rec = &ler
	return nil
}

func (l *memoryLock) RecordEvent(string) {}

// Identity is the candidate's identity; a process-wide lock has a single candidate.
func (l *memoryLock) Identity() string { return "sample-operator-in-process" }

func (l *memoryLock) Describe() string { return "memory/" + l.name }
