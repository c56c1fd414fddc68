package redis

import (
	"context"
	"crypto/sha1"
	"encoding/hex"

	"github.com/redis/rueidis"
)

// script is a Lua script called by its SHA-1. The full text goes over the
// wire only when a server answers NOSCRIPT: after a restart, a failover or
// a SCRIPT FLUSH, or on a node added to a cluster.
type script struct {
	src string
	sha string
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(sum[:])}
}

// cmd builds an EVALSHA of the script.
func (s *script) cmd(c rueidis.Client, keys []string, args ...string) rueidis.Completed {
	return c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
}

// evalCmd builds an EVAL of the script, which also loads it.
func (s *script) evalCmd(c rueidis.Client, keys []string, args ...string) rueidis.Completed {
	return c.B().Eval().Script(s.src).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
}

// exec runs the script once.
func (s *script) exec(ctx context.Context, c rueidis.Client, keys, args []string) rueidis.RedisResult {
	resp := c.Do(ctx, s.cmd(c, keys, args...))
	if noScript(resp) {
		resp = c.Do(ctx, s.evalCmd(c, keys, args...))
	}
	return resp
}

// execMulti sends cmds, EVALSHAs of the script, in one pipeline, then
// sends again with EVAL, built by eval(i), those whose server lacked the
// script.
func (s *script) execMulti(ctx context.Context, c rueidis.Client, cmds rueidis.Commands, eval func(i int) rueidis.Completed) []rueidis.RedisResult {
	resps := c.DoMulti(ctx, cmds...)
	var again []int
	for i, resp := range resps {
		if noScript(resp) {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return resps
	}
	retry := make(rueidis.Commands, len(again))
	for j, i := range again {
		retry[j] = eval(i)
	}
	for j, resp := range c.DoMulti(ctx, retry...) {
		resps[again[j]] = resp
	}
	return resps
}

func noScript(resp rueidis.RedisResult) bool {
	err, ok := rueidis.IsRedisErr(resp.Error())
	return ok && err.IsNoScript()
}
