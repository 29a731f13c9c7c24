package ai.seprt.core;

import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadFactory;

/**
 * Threads for one image: {@link #run} splits a kernel's independent work (output channels or
 * rows) into as many parts as threads, runs part 0 on the calling thread and the others on
 * daemon worker threads, and returns when all are done. One thread: no pool, a plain call.
 * Each output value is computed by exactly one part in the usual order, so the results do not
 * depend on the thread count.
 */
final class Parallel {
    /** Part p of n parts of some work. */
    interface Part {
        void run(int part, int parts);
    }

    final int threads;
    private final ExecutorService pool;

    Parallel(int threads) {
        if (threads < 1) {
            throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        }
        this.threads = threads;
        pool = threads == 1 ? null : Executors.newFixedThreadPool(threads - 1, new ThreadFactory() {
            @Override
            public Thread newThread(Runnable r) {
                Thread t = new Thread(r, "seprt-worker");
                t.setDaemon(true);
                return t;
            }
        });
    }

    static final Parallel SERIAL = new Parallel(1);

    /** Runs body(p, parts) for p in 0..parts-1, parts = min(threads, maxParts), and waits. */
    void run(final Part body, int maxParts) {
        final int parts = Math.max(1, Math.min(threads, maxParts));
        if (parts == 1) {
            body.run(0, 1);
            return;
        }
        Future<?>[] done = new Future<?>[parts - 1];
        for (int p = 1; p < parts; p++) {
            final int part = p;
            done[p - 1] = pool.submit(new Runnable() {
                @Override
                public void run() {
                    body.run(part, parts);
                }
            });
        }
        body.run(0, parts);
        for (Future<?> f : done) {
            try {
                f.get();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while waiting for a worker", e);
            } catch (java.util.concurrent.ExecutionException e) {
                Throwable c = e.getCause();
                if (c instanceof RuntimeException) {
                    throw (RuntimeException) c;
                }
                throw new IllegalStateException(c);
            }
        }
    }

    /** First index of part p when n items are split into parts contiguous ranges. */
    static int start(int n, int part, int parts) {
        return (int) ((long) n * part / parts);
    }
}
