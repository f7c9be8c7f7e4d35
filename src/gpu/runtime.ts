/// <reference types="@webgpu/types" />
// A compact WebGPU runtime in the spirit of jax-js's backend: a buffer pool, a pipeline cache keyed by
// shader source + entry point + specialisation constants, one command encoder that batches many
// dispatches per submit, a uniform arena, and one explicit readback API.
import {
  makeBindGroupLayoutDescriptors,
  makeShaderDataDefinitions,
  makeStructuredView,
  type ShaderDataDefinitions,
  type StructuredView,
} from "webgpu-utils";
import { type AcquiredDevice, acquireDevice, type AcquireOptions } from "./device.ts";

export type DType = "f32" | "u32" | "i32";
export type TypedArrayOf<D extends DType> = D extends "f32" ? Float32Array : D extends "u32" ? Uint32Array : Int32Array;
type AnyTyped = Float32Array | Uint32Array | Int32Array;

/** A tensor lives on the device. Reading it back is explicit: `rt.read(t)`. */
export class Tensor<D extends DType = DType> {
  // Shared by a tensor and its reshaped views: the buffer goes back to the pool when it drops to 0.
  readonly #owner: { refs: number };
  constructor(
    readonly rt: Runtime,
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: D,
    owner?: { refs: number },
  ) {
    this.#owner = owner ?? { refs: 1 };
  }
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get byteLength(): number {
    return this.size * 4;
  }
  get released(): boolean {
    return this.#owner.refs <= 0;
  }
  /** Same buffer, new shape (no copy). The view shares this tensor's reference count. */
  reshape(shape: readonly number[]): Tensor<D> {
    const size = shape.reduce((a, b) => a * b, 1);
    if (size !== this.size) throw new Error(`reshape: [${this.shape}] has ${this.size} elements, [${shape}] ${size}`);
    return new Tensor(this.rt, this.buffer, [...shape], this.dtype, this.#owner);
  }
  /** Keep the tensor alive for one more `release()` (a layer saving its input for backward). */
  retain(): this {
    if (this.released) throw new Error("retain: tensor was already released");
    this.#owner.refs++;
    return this;
  }
  /** Drop a reference; the last one returns the buffer to the pool. Later dispatches may reuse it at
   * once: the encoder keeps order. */
  release(): void {
    if (this.#owner.refs <= 0) return;
    if (--this.#owner.refs === 0) this.rt.recycle(this.buffer);
  }
}

/** What a kernel module hands the runtime for one dispatch. */
export interface Dispatch {
  /** WGSL source; with entryPoint and constants it forms the pipeline cache key. */
  code: string;
  entryPoint?: string;
  /** Values for `override` declarations: the kernel's specialisation. */
  constants?: Record<string, number>;
  /** Storage bindings by their WGSL variable name. */
  buffers: Record<string, Tensor | GPUBuffer>;
  /** Values for the shader's single `var<uniform>` struct, by field name (layout from webgpu-utils). */
  uniforms?: Record<string, number | number[]>;
  workgroups: readonly [number, number?, number?];
  /** For error messages and profiling. */
  label?: string;
}

export interface RuntimeStats {
  dispatches: number;
  submits: number;
  readbacks: number;
  pipelines: number;
  buffersCreated: number;
}

interface CompiledPipeline {
  pipeline: GPUComputePipeline;
  // Held so the JS wrapper outlives the pipeline: Dawn's Node binding crashed when it was collected.
  pipelineLayout: GPUPipelineLayout;
  layouts: GPUBindGroupLayout[];
  storageBindings: Map<string, { group: number; binding: number }>;
  uniform?: { group: number; binding: number; view: StructuredView; size: number };
}

/** Device time of one kernel label while profiling: milliseconds summed over `count` dispatches. */
export interface KernelTime {
  ms: number;
  count: number;
}

const UNIFORM_CHUNK = 64 * 1024;
const MAX_DISPATCHES_PER_SUBMIT = 1024;
const POISON_BYTE = 0xff; // 0xffffffff: a NaN as f32, the largest u32, -1 as i32

export class Runtime {
  readonly device: GPUDevice;
  readonly adapterName: string;
  readonly runtimeName: AcquiredDevice["runtime"];
  readonly stats: RuntimeStats = { dispatches: 0, submits: 0, readbacks: 0, pipelines: 0, buffersCreated: 0 };
  /** Tests set this: every fresh output buffer is filled with 0xff bytes (NaN) so unwritten elements fail. */
  poisonOutputs = false;

  #pool = new Map<number, GPUBuffer[]>();
  #defs = new Map<string, ShaderDataDefinitions>();
  // Keyed by source, then entry point + constants: a dispatch looks a source up by the same string object
  // (V8 caches its hash) instead of hashing a freshly concatenated 100 KB key every time.
  #pipelines = new Map<string, Map<string, CompiledPipeline>>();
  #encoder?: GPUCommandEncoder;
  #pass?: GPUComputePassEncoder;
  #pending = 0;
  #uniformAlign: number;
  #uniformChunks: { buffer: GPUBuffer; staging: Uint8Array }[] = [];
  #uniformCursor = 0; // bytes used across chunks in this batch
  #poisonSource?: GPUBuffer;
  #errors: string[] = [];
  #retired: GPUBuffer[] = [];
  #profile?: {
    queries: GPUQuerySet;
    labels: string[];
    reads: Promise<void>[];
    byLabel: Map<string, KernelTime>;
  };

  constructor(acquired: AcquiredDevice) {
    this.device = acquired.device;
    this.adapterName = acquired.adapterName;
    this.runtimeName = acquired.runtime;
    this.#uniformAlign = this.device.limits.minUniformBufferOffsetAlignment;
    this.device.addEventListener?.("uncapturederror", (ev) => {
      this.#errors.push((ev as GPUUncapturedErrorEvent).error.message);
    });
  }

  static async create(opts?: AcquireOptions): Promise<Runtime> {
    return new Runtime(await acquireDevice(opts));
  }

  // ---------------------------------------------------------------- buffers

  #bucket(bytes: number): number {
    // Round to 256 B below 1 MiB, else to 1/16 of the next power of two: bounded waste, good reuse.
    if (bytes <= 1 << 20) return Math.max(256, Math.ceil(bytes / 256) * 256);
    const step = 2 ** Math.floor(Math.log2(bytes)) / 16;
    return Math.ceil(bytes / step) * step;
  }

  #acquireBuffer(bytes: number): { buffer: GPUBuffer; fresh: boolean } {
    const size = this.#bucket(bytes);
    const free = this.#pool.get(size);
    const reused = free?.pop();
    if (reused) return { buffer: reused, fresh: false };
    const max = this.device.limits.maxStorageBufferBindingSize;
    if (size > max) {
      throw new Error(`A ${bytes}-byte tensor exceeds this adapter's maxStorageBufferBindingSize (${max}).`);
    }
    this.stats.buffersCreated++;
    const buffer = this.device.createBuffer({
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    return { buffer, fresh: true };
  }

  recycle(buffer: GPUBuffer): void {
    const list = this.#pool.get(buffer.size) ?? [];
    list.push(buffer);
    this.#pool.set(buffer.size, list);
  }

  /** An uninitialised tensor (poisoned with NaN when `poisonOutputs` is set). */
  empty<D extends DType = "f32">(shape: readonly number[], dtype: D = "f32" as D): Tensor<D> {
    const size = shape.reduce((a, b) => a * b, 1);
    if (!Number.isInteger(size) || size < 0) throw new Error(`bad shape [${shape}]`);
    const { buffer } = this.#acquireBuffer(size * 4);
    const t = new Tensor(this, buffer, [...shape], dtype);
    if (this.poisonOutputs) this.#poison(buffer);
    return t;
  }

  #poison(buffer: GPUBuffer): void {
    if (!this.#poisonSource || this.#poisonSource.size < buffer.size) {
      // Recorded copies may still read the old source: destroy it only after the next submit.
      if (this.#poisonSource) this.#retired.push(this.#poisonSource);
      this.#poisonSource = this.device.createBuffer({
        size: buffer.size,
        usage: GPUBufferUsage.COPY_SRC,
        mappedAtCreation: true,
      });
      new Uint8Array(this.#poisonSource.getMappedRange()).fill(POISON_BYTE);
      this.#poisonSource.unmap();
    }
    this.#endPass();
    this.#enc().copyBufferToBuffer(this.#poisonSource, 0, buffer, 0, buffer.size);
  }

  /** Copy host data to a new device tensor. */
  upload<D extends DType>(data: TypedArrayOf<D> | number[], shape: readonly number[], dtype?: D): Tensor<D> {
    const dt = (dtype ?? (data instanceof Uint32Array ? "u32" : data instanceof Int32Array ? "i32" : "f32")) as D;
    const arr: AnyTyped = Array.isArray(data)
      ? dt === "u32" ? new Uint32Array(data) : dt === "i32" ? new Int32Array(data) : new Float32Array(data)
      : data;
    const size = shape.reduce((a, b) => a * b, 1);
    if (arr.length !== size) throw new Error(`upload: ${arr.length} values for shape [${shape}] (${size})`);
    const { buffer, fresh } = this.#acquireBuffer(size * 4);
    // writeBuffer runs before any not-yet-submitted dispatch: if this pooled buffer is still read by
    // recorded work, submit that work first.
    if (!fresh && this.#pending > 0) this.flush();
    if (arr.byteLength > 0) this.device.queue.writeBuffer(buffer, 0, arr.buffer, arr.byteOffset, arr.byteLength);
    return new Tensor(this, buffer, [...shape], dt);
  }

  // ---------------------------------------------------------------- pipelines

  defs(code: string): ShaderDataDefinitions {
    let d = this.#defs.get(code);
    if (!d) {
      d = makeShaderDataDefinitions(code);
      this.#defs.set(code, d);
    }
    return d;
  }

  pipeline(
    code: string,
    entryPoint: string | undefined,
    constants: Record<string, number> | undefined,
    label = "kernel",
  ): CompiledPipeline {
    let bySource = this.#pipelines.get(code);
    if (!bySource) this.#pipelines.set(code, bySource = new Map());
    const key = `${entryPoint ?? ""}|${JSON.stringify(constants ?? {})}`;
    const hit = bySource.get(key);
    if (hit) return hit;
    const defs = this.defs(code);
    const entry = entryPoint ?? Object.keys(defs.entryPoints)[0];
    if (!entry || !defs.entryPoints[entry]) throw new Error(`${label}: no compute entry point "${entryPoint}"`);
    this.device.pushErrorScope("validation");
    const module = this.device.createShaderModule({ code, label });
    const layoutDescs = makeBindGroupLayoutDescriptors(defs, { compute: { entryPoint: entry } });
    const layouts = layoutDescs.map((d) => this.device.createBindGroupLayout(d));
    const pipelineLayout = this.device.createPipelineLayout({ bindGroupLayouts: layouts });
    const pipeline = this.device.createComputePipeline({
      label,
      layout: pipelineLayout,
      compute: { module, entryPoint: entry, constants },
    });
    this.device.popErrorScope().then((err) => {
      if (err) this.#errors.push(`${label} (${entry}, ${JSON.stringify(constants ?? {})}): ${err.message}`);
    });
    // Only the storage buffers this entry point uses are bound (webgpu-utils' layouts omit the rest).
    const used = new Set(defs.entryPoints[entry].resources.map((r) => r.name));
    const storageBindings = new Map<string, { group: number; binding: number }>();
    for (const [name, v] of Object.entries(defs.storages)) {
      if (used.has(name)) storageBindings.set(name, { group: v.group, binding: v.binding });
    }
    const uniformNames = Object.keys(defs.uniforms).filter((n) => used.has(n));
    if (uniformNames.length > 1) {
      throw new Error(`${label}: one var<uniform> per shader, found ${uniformNames.join(", ")}`);
    }
    let uniform: CompiledPipeline["uniform"];
    if (uniformNames.length === 1) {
      const def = defs.uniforms[uniformNames[0]];
      uniform = { group: def.group, binding: def.binding, view: makeStructuredView(def), size: def.size };
    }
    const compiled = { pipeline, pipelineLayout, layouts, storageBindings, uniform };
    bySource.set(key, compiled);
    this.stats.pipelines++;
    return compiled;
  }

  // ---------------------------------------------------------------- dispatch batching

  #enc(): GPUCommandEncoder {
    this.#encoder ??= this.device.createCommandEncoder();
    return this.#encoder;
  }

  #endPass(): void {
    this.#pass?.end();
    this.#pass = undefined;
  }

  #uniformSlot(bytes: ArrayBuffer): { buffer: GPUBuffer; offset: number } {
    const size = Math.ceil(bytes.byteLength / this.#uniformAlign) * this.#uniformAlign;
    let chunkIndex = Math.floor(this.#uniformCursor / UNIFORM_CHUNK);
    let offset = this.#uniformCursor % UNIFORM_CHUNK;
    if (offset + size > UNIFORM_CHUNK) {
      chunkIndex++;
      offset = 0;
    }
    while (this.#uniformChunks.length <= chunkIndex) {
      this.#uniformChunks.push({
        buffer: this.device.createBuffer({
          size: UNIFORM_CHUNK,
          usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        }),
        staging: new Uint8Array(UNIFORM_CHUNK),
      });
    }
    const chunk = this.#uniformChunks[chunkIndex];
    chunk.staging.set(new Uint8Array(bytes), offset);
    this.#uniformCursor = chunkIndex * UNIFORM_CHUNK + offset + size;
    return { buffer: chunk.buffer, offset };
  }

  /** Record one dispatch. Nothing runs until `flush()` (or a readback, which flushes). */
  dispatch(d: Dispatch): void {
    const label = d.label ?? "kernel";
    const p = this.pipeline(d.code, d.entryPoint, d.constants, label);
    const entries: GPUBindGroupEntry[][] = p.layouts.map(() => []);
    for (const [name, where] of p.storageBindings) {
      const t = d.buffers[name];
      if (!t) throw new Error(`${label}: storage binding "${name}" was not given`);
      if (t instanceof Tensor && t.released) throw new Error(`${label}: tensor for "${name}" was released`);
      const buffer = t instanceof Tensor ? t.buffer : t;
      entries[where.group].push({ binding: where.binding, resource: { buffer } });
    }
    if (p.uniform) {
      if (!d.uniforms) throw new Error(`${label}: the shader declares a uniform struct but no uniforms were given`);
      p.uniform.view.set(d.uniforms);
      const slot = this.#uniformSlot(p.uniform.view.arrayBuffer);
      entries[p.uniform.group].push({
        binding: p.uniform.binding,
        resource: { buffer: slot.buffer, offset: slot.offset, size: p.uniform.size },
      });
    }
    const [x, y = 1, z = 1] = d.workgroups;
    const maxWg = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxWg || y > maxWg || z > maxWg) {
      throw new Error(`${label}: ${x}x${y}x${z} workgroups exceed the adapter's ${maxWg} per dimension`);
    }
    if (x === 0 || y === 0 || z === 0) return;
    const prof = this.#profile;
    if (prof) {
      // One pass per dispatch, its start and end stamped: the kernel's own time on the device.
      this.#endPass();
      const at = 2 * prof.labels.push(label) - 2;
      this.#pass = this.#enc().beginComputePass({
        timestampWrites: { querySet: prof.queries, beginningOfPassWriteIndex: at, endOfPassWriteIndex: at + 1 },
      });
    }
    this.#pass ??= this.#enc().beginComputePass();
    this.#pass.setPipeline(p.pipeline);
    entries.forEach((e, group) =>
      this.#pass!.setBindGroup(group, this.device.createBindGroup({ layout: p.layouts[group], entries: e }))
    );
    this.#pass.dispatchWorkgroups(x, y, z);
    if (prof) this.#endPass();
    this.stats.dispatches++;
    if (++this.#pending >= MAX_DISPATCHES_PER_SUBMIT) this.flush();
  }

  /** Submit everything recorded so far. */
  flush(): void {
    this.#endPass();
    if (!this.#encoder) return;
    // Uniform bytes go up in one write per chunk; queue order puts them before this submit's commands
    // and after the previous submit's, so chunks are reused safely across batches.
    const used = this.#uniformCursor;
    for (let i = 0; i * UNIFORM_CHUNK < used; i++) {
      const n = Math.min(UNIFORM_CHUNK, used - i * UNIFORM_CHUNK);
      this.device.queue.writeBuffer(this.#uniformChunks[i].buffer, 0, this.#uniformChunks[i].staging, 0, n);
    }
    const stamps = this.#profile?.labels.length ? this.#resolveStamps() : undefined;
    this.device.queue.submit([this.#encoder.finish()]);
    stamps?.();
    for (const b of this.#retired.splice(0)) b.destroy(); // submitted work keeps what it uses alive
    this.#encoder = undefined;
    this.#uniformCursor = 0;
    this.#pending = 0;
    this.stats.submits++;
  }

  // ---------------------------------------------------------------- profiling

  /**
   * Start timing every dispatch on the device (timestamp queries), summed by label. Returns false when the
   * device has no timestamp queries. Each dispatch then runs in a pass of its own, so work does not overlap.
   */
  startProfile(): boolean {
    if (!this.device.features.has("timestamp-query")) return false;
    this.flush();
    this.#profile ??= {
      queries: this.device.createQuerySet({ type: "timestamp", count: 2 * MAX_DISPATCHES_PER_SUBMIT }),
      labels: [],
      reads: [],
      byLabel: new Map(),
    };
    return true;
  }

  /** Stop profiling; the device time and count of each kernel label since `startProfile`. */
  async stopProfile(): Promise<Map<string, KernelTime>> {
    const prof = this.#profile;
    if (!prof) return new Map();
    this.flush();
    this.#profile = undefined;
    await Promise.all(prof.reads);
    prof.queries.destroy();
    return prof.byLabel;
  }

  /** Records the copy of this batch's timestamps; the returned function reads them once submitted. */
  #resolveStamps(): () => void {
    const prof = this.#profile!;
    const labels = prof.labels.splice(0);
    const bytes = 16 * labels.length;
    const resolved = this.device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const staging = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.#encoder!.resolveQuerySet(prof.queries, 0, 2 * labels.length, resolved, 0);
    this.#encoder!.copyBufferToBuffer(resolved, 0, staging, 0, bytes);
    return () => {
      prof.reads.push(
        staging.mapAsync(GPUMapMode.READ).then(() => {
          const ns = new BigUint64Array(staging.getMappedRange());
          labels.forEach((label, i) => {
            const t = prof.byLabel.get(label) ?? { ms: 0, count: 0 };
            t.ms += Number(ns[2 * i + 1] - ns[2 * i]) / 1e6;
            t.count++;
            prof.byLabel.set(label, t);
          });
          staging.unmap();
          staging.destroy();
          resolved.destroy();
        }),
      );
    };
  }

  /** Wait until the device has finished all submitted work; throws any WebGPU error seen so far. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.#throwErrors();
  }

  #throwErrors(): void {
    if (this.#errors.length) {
      const msg = this.#errors.join("\n");
      this.#errors = [];
      throw new Error(`WebGPU error: ${msg}`);
    }
  }

  // ---------------------------------------------------------------- readback

  /** Read one tensor back to the host. Costs a submit and a map (~11 ms in Deno): call rarely. */
  async read<D extends DType>(t: Tensor<D>): Promise<TypedArrayOf<D>> {
    const [out] = await this.readMany([t]);
    return out as TypedArrayOf<D>;
  }

  /** Read several tensors with a single map: the one way to get data off the device. */
  async readMany(tensors: readonly Tensor[]): Promise<AnyTyped[]> {
    const offsets: number[] = [];
    let total = 0;
    for (const t of tensors) {
      if (t.released) throw new Error("readMany: tensor was released");
      offsets.push(total);
      total += Math.ceil(t.byteLength / 16) * 16;
    }
    const staging = this.device.createBuffer({
      size: Math.max(16, total),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    this.#endPass();
    const enc = this.#enc();
    tensors.forEach((t, i) => {
      if (t.byteLength) enc.copyBufferToBuffer(t.buffer, 0, staging, offsets[i], t.byteLength);
    });
    this.flush();
    this.stats.readbacks++;
    await staging.mapAsync(GPUMapMode.READ);
    this.#throwErrors();
    const bytes = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    return tensors.map((t, i) => {
      const ctor = t.dtype === "u32" ? Uint32Array : t.dtype === "i32" ? Int32Array : Float32Array;
      return new ctor(bytes, offsets[i], t.size);
    });
  }

  /** Drop pooled buffers and cached pipelines. */
  destroy(): void {
    this.flush();
    for (const list of this.#pool.values()) for (const b of list) b.destroy();
    this.#pool.clear();
    this.#pipelines.clear();
  }
}

let shared: Promise<Runtime> | undefined;
/** The process-wide runtime on the process-wide device. */
export function getRuntime(opts?: AcquireOptions): Promise<Runtime> {
  shared ??= Runtime.create(opts);
  return shared;
}
