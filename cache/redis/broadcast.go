package redis

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/chihaya/chihaya/cache"
)

var _ cache.Broadcaster = (*store)(nil)

// policyChannel is the pub/sub channel, after the key prefix, on which
// instances pass on the changes their web application pushes to one of
// them. Trackers with different prefixes do not hear each other. In a
// cluster, PUBLISH reaches the subscribers of every node.
const policyChannel = "policy"

// Back-off between subscription attempts: from subscribeMinBackoff,
// doubling up to subscribeMaxBackoff, and back to the start once a
// subscription has lasted subscribeStable.
const (
	subscribeMinBackoff = 100 * time.Millisecond
	subscribeMaxBackoff = 5 * time.Second
	subscribeStable     = 10 * time.Second
)

var errClosed = errors.New("redis: the store is closed")

// Publish implements cache.Broadcaster with PUBLISH on <key_prefix>policy.
func (st *store) Publish(ctx context.Context, msg []byte) error {
	ctx, cancel := st.bound(ctx)
	if cancel != nil {
		defer cancel()
	}
	// string(msg) copies: a command that times out may still be written
	// later, after the caller has reused msg.
	cmd := st.client.B().Publish().Channel(st.prefix + policyChannel).Message(string(msg)).Build()
	if err := st.client.Do(ctx, cmd).Error(); err != nil {
		return fmt.Errorf("redis: publish: %w", err)
	}
	return nil
}

// Subscribe implements cache.Broadcaster: SUBSCRIBE to <key_prefix>policy,
// on one of the store's connections, again after every failure.
func (st *store) Subscribe(ctx context.Context, fn func(msg []byte), subscribed func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-st.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	closed := func() error {
		select {
		case <-st.stop:
			return errClosed
		default:
			return ctx.Err()
		}
	}

	channel := st.prefix + policyChannel
	receive := func(m rueidis.PubSubMessage) { fn([]byte(m.Message)) }
	backoff := subscribeMinBackoff
	for {
		var since atomic.Int64 // when the subscription was confirmed, Unix ns
		hooked := rueidis.WithOnSubscriptionHook(ctx, func(s rueidis.PubSubSubscription) {
			if s.Kind == "subscribe" && s.Channel == channel {
				// Called on the connection's reader goroutine,
				// before any message of the subscription.
				since.Store(time.Now().UnixNano())
				if subscribed != nil {
					subscribed()
				}
			}
		})
		// Receive returns when the connection fails, the subscription
		// is refused, or ctx ends; the client's own retries are off.
		_ = st.client.Receive(hooked, st.client.B().Subscribe().Channel(channel).Build(), receive)
		if ctx.Err() != nil {
			return closed()
		}
		if at := since.Load(); at != 0 && time.Since(time.Unix(0, at)) >= subscribeStable {
			backoff = subscribeMinBackoff
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return closed()
		case <-t.C:
		}
		backoff = min(2*backoff, subscribeMaxBackoff)
	}
}
