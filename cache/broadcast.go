package cache

import "context"

// Broadcaster is implemented by stores that several tracker processes
// share and that can carry short messages between them (the redis
// driver's pub/sub channel). The tracker uses it to pass the changes a web
// application pushes to one instance on to the others.
//
// Delivery is best effort: a message reaches the processes subscribed when
// it is published, in the order the store received it, and is lost for a
// process that is not subscribed at that moment.
type Broadcaster interface {
	// Publish sends msg to every subscriber of the store's channel, this
	// store's own subscription included: a receiver must recognise and
	// skip its own messages if it has applied them already.
	Publish(ctx context.Context, msg []byte) error
	// Subscribe calls fn with every message published on the store's
	// channel, one at a time and in the order the store delivers them,
	// until ctx ends or the store is closed; then it returns the reason.
	// msg is fn's to keep. A lost connection is re-established with
	// back-off, without a log line. subscribed, if not nil, is called
	// each time a subscription is in place: first, and again after every
	// reconnection, when messages published in between are lost and the
	// caller may want to catch up by other means. It must not block.
	Subscribe(ctx context.Context, fn func(msg []byte), subscribed func()) error
}
