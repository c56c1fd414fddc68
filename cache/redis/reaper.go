package redis

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// run reaps every interval until Close.
func (st *store) run(interval time.Duration) {
	defer close(st.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-st.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), interval)
			// Errors are not worth a log line per tick: the swarms stay
			// exact anyway (every read sweeps first), the keys' TTLs bound
			// what is left behind, and the next tick tries again.
			if st.lease(ctx, interval) {
				_ = st.reap(ctx)
			}
			cancel()
		}
	}
}

// lease reports whether this store is the one to reap this round. Several
// trackers sharing a Redis would otherwise all walk every key each
// interval; reaping is safe to run side by side (each sweep is atomic), so
// this only saves work, and an instance that dies only delays the next
// round until its lease runs out.
func (st *store) lease(ctx context.Context, interval time.Duration) bool {
	// Slightly shorter than the interval, so that the holder finds its
	// lease expired by its next tick.
	ms := max(interval.Milliseconds()*9/10, 1)
	resp := st.client.Do(ctx, st.client.B().Set().Key(st.prefix+"reaper").Value("1").Nx().PxMilliseconds(ms).Build())
	return resp.Error() == nil
}

// reapBatch is how many keys one SCAN step asks for, and so how many
// sweeps go in one pipeline.
const reapBatch = 256

// reap sweeps every swarm under the key prefix, node by node: the same
// sweep an announce or a scrape of the swarm does, so that swarms nobody
// asks about give their memory back. It stops at the first error or when
// the store closes.
func (st *store) reap(ctx context.Context) error {
	now := strconv.FormatInt(millis(st.now()), 10)
	match := globEscape(st.prefix) + "{*}" + suffixes[0]
	for _, node := range st.client.Nodes() {
		// In a cluster, replicas hold copies of their masters' keys;
		// one walk over the masters covers everything once.
		if role, err := node.Do(ctx, node.B().Role().Build()).ToArray(); err == nil && len(role) > 0 {
			if r, _ := role[0].ToString(); r != "master" {
				continue
			}
		}
		var cursor uint64
		for {
			select {
			case <-st.stop:
				return nil
			default:
			}
			entry, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(match).Count(reapBatch).Type("hash").Build()).AsScanEntry()
			if err != nil {
				return err
			}
			if len(entry.Elements) > 0 {
				if err := st.sweepKeys(ctx, entry.Elements, now); err != nil {
					return err
				}
			}
			if cursor = entry.Cursor; cursor == 0 {
				break
			}
		}
	}
	return nil
}

// sweepKeys sweeps the swarms whose peer hashes are named by keys.
func (st *store) sweepKeys(ctx context.Context, keys []string, now string) error {
	all := make([][nkeys]string, len(keys))
	cmds := make(rueidis.Commands, 0, len(keys))
	for i, k := range keys {
		tag := strings.TrimSuffix(k, suffixes[0])
		for j, s := range suffixes {
			all[i][j] = tag + s
		}
		cmds = append(cmds, scrapeScript.cmd(st.client, all[i][:], now, st.life))
	}
	resps := scrapeScript.execMulti(ctx, st.client, cmds, func(i int) rueidis.Completed {
		return scrapeScript.evalCmd(st.client, all[i][:], now, st.life)
	})
	for _, resp := range resps {
		if err := resp.Error(); err != nil {
			return err
		}
	}
	return nil
}

// globEscape quotes the characters SCAN's MATCH treats as special, so a
// key prefix is matched as it is written.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}
