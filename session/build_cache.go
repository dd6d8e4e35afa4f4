package session

import (
	"context"
	"time"
)

// The builds use the classic builder (session/docker), whose cache is the
// intermediate layers of the images themselves: they go with the images
// (image_prune.go). The engine's own build cache, which docker system df
// counts and BuildKit builds on the host fill, is bounded by
// Config.BuildCacheMax after every build and at start.

// buildCacheTimeout bounds one prune of the build cache.
const buildCacheTimeout = 5 * time.Minute

// pruneBuildCache trims the build cache to Config.BuildCacheMax on its
// own goroutine, one prune at a time: a build's result does not wait for
// it, and builds ending together prune once.
func (im *Images) pruneBuildCache(ctx context.Context) {
	limit := im.cfg.BuildCacheMax
	if limit <= 0 || !im.cachePruning.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer im.cachePruning.Store(false)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), buildCacheTimeout)
		defer cancel()
		im.trimBuildCache(ctx, limit)
	}()
}

// trimBuildCache prunes the build cache beyond limit bytes.
func (im *Images) trimBuildCache(ctx context.Context, limit int64) {
	start := time.Now()
	freed, err := im.builder.PruneBuildCache(ctx, limit)
	if err != nil {
		im.log.Warn("prune build cache", "build_cache_max", limit, "err", err)
		return
	}
	if freed > 0 {
		im.log.Info("pruned build cache", "build_cache_max", limit, "freed_bytes", freed, "took", time.Since(start))
	}
}

// startupPrune removes what a crash or the previous run left: unused
// previous images, and build cache beyond the limit.
func (im *Images) startupPrune(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, buildCacheTimeout)
	defer cancel()
	im.pruneAll(ctx)
	if im.cfg.BuildCacheMax > 0 {
		im.trimBuildCache(ctx, im.cfg.BuildCacheMax)
	}
}
