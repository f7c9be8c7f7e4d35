// Token buckets by key (a client address, a volunteer), and the client address a request comes from.
// A bucket idle long enough to have refilled holds nothing a fresh one would not, so it is dropped; past
// `maxKeys` the least recently used goes first. Spraying keys therefore neither grows memory without
// bound nor resets a bucket that is still draining.

export interface RateLimit {
  /** Sustained requests per second. */
  perSecond: number;
  /** Bucket size (requests allowed in a burst). */
  burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  // Map order is recency order: a touched key is deleted and re-inserted at the end.
  private readonly buckets = new Map<string, Bucket>();
  private readonly refillMs: number;

  constructor(
    readonly limit: RateLimit,
    private readonly maxKeys = 100_000,
    private readonly now: () => number = Date.now,
  ) {
    this.refillMs = (limit.burst / limit.perSecond) * 1000;
  }

  get size(): number {
    return this.buckets.size;
  }

  private bucket(key: string, now: number): Bucket {
    const b = this.buckets.get(key) ?? { tokens: this.limit.burst, at: now };
    b.tokens = Math.min(this.limit.burst, b.tokens + ((now - b.at) / 1000) * this.limit.perSecond);
    b.at = now;
    this.buckets.delete(key);
    this.buckets.set(key, b);
    return b;
  }

  private evict(now: number): void {
    for (const [k, b] of this.buckets) {
      if (this.buckets.size <= this.maxKeys && now - b.at < this.refillMs) break;
      this.buckets.delete(k);
    }
  }

  /** Milliseconds until `key` has a whole token (0: it has one now); takes nothing. */
  wait(key: string): number {
    const now = this.now();
    const b = this.bucket(key, now);
    this.evict(now);
    return b.tokens >= 1 ? 0 : Math.ceil(((1 - b.tokens) / this.limit.perSecond) * 1000);
  }

  /** Take one token: 0 when `key` had one, else the milliseconds to wait (nothing is taken then). */
  take(key: string): number {
    const w = this.wait(key);
    if (w === 0) this.buckets.get(key)!.tokens -= 1;
    return w;
  }
}

/** The 8 groups of an IPv6 address (null when it is not one). */
function ipv6Groups(addr: string): number[] | null {
  const halves = addr.split("::");
  if (halves.length > 2) return null;
  const v4 = (g: string) => {
    const b = g.split(".").map(Number);
    return [((b[0] << 8) | b[1]).toString(16), ((b[2] << 8) | b[3]).toString(16)];
  };
  const groups = (s: string) => (s ? s.split(":") : []).flatMap((g) => (g.includes(".") ? v4(g) : [g]));
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  const fill = 8 - head.length - tail.length;
  if (halves.length === 1 ? fill !== 0 : fill < 1) return null;
  const all = [...head, ...Array<string>(halves.length === 2 ? fill : 0).fill("0"), ...tail];
  const nums = all.map((g) => (/^[0-9a-f]{1,4}$/i.test(g) ? parseInt(g, 16) : NaN));
  return nums.some(Number.isNaN) ? null : nums;
}

/**
 * The key that limits and lease caps count a client address under: IPv4 as is (IPv4-mapped IPv6
 * unwrapped), IPv6 by its /64 prefix, since one subscriber commonly holds a whole /64.
 */
export function addressKey(addr: string | undefined | null): string {
  const a = (addr ?? "").trim().replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  if (!a) return "unknown";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  if (mapped) return mapped[1];
  if (!a.includes(":")) return a;
  const g = ipv6Groups(a);
  return g ? `${g.slice(0, 4).map((x) => x.toString(16)).join(":")}::/64` : a;
}
