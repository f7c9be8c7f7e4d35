// Model checkpoints as safetensors: every parameter (PyTorch-style names, shapes as stored) plus the
// model config and training metadata as JSON strings in __metadata__, so a checkpoint rebuilds its model.
import {
  decodeSafetensors,
  encodeSafetensors,
  loadCheckpoint,
  type SafetensorsFile,
  type Tensor as StTensor,
} from "../checkpoint/safetensors.ts";
import { writeBytesAtomic } from "../data/io.ts";
import type { Runtime } from "../gpu/runtime.ts";
import { buildModel, type Model, ModelConfig } from "./models.ts";

export const FORMAT = "webgpu-backdoor-detect/model@1";

const VELOCITY = ".velocity";

/** Every parameter read off the device (one readback) as safetensors tensors; with `velocities`, the SGD
 *  momentum of each trainable parameter too, as `NAME.velocity` (a training state to resume from). */
export async function readParameters(
  rt: Runtime,
  model: Model,
  { velocities = false } = {},
): Promise<Record<string, StTensor>> {
  const entries = model.params.map((p) => [p.name, p.shape, p.value] as const);
  if (velocities) {
    for (const p of model.params) if (p.velocity) entries.push([p.name + VELOCITY, p.shape, p.velocity]);
  }
  const values = await rt.readMany(entries.map((e) => e[2]));
  const tensors: Record<string, StTensor> = {};
  entries.forEach(([name, shape], i) => (tensors[name] = { dtype: "F32", shape, data: values[i] as Float32Array }));
  return tensors;
}

/** The metadata of a checkpoint of `model`: the format, its config, and `extra` (JSON unless a string). */
export function checkpointMetadata(model: Model, extra: Record<string, unknown> = {}): Record<string, string> {
  const metadata: Record<string, string> = { format: FORMAT, config: JSON.stringify(model.config) };
  for (const [k, v] of Object.entries(extra)) metadata[k] = typeof v === "string" ? v : JSON.stringify(v);
  return metadata;
}

/** Read every parameter off the device (one readback) into a safetensors byte buffer. */
export async function modelToSafetensors(
  rt: Runtime,
  model: Model,
  extra: Record<string, unknown> = {},
): Promise<Uint8Array> {
  return encodeSafetensors(await readParameters(rt, model), checkpointMetadata(model, extra));
}

/**
 * The states of a training run in one file: state i's tensors (parameters and velocities) named `i/NAME`.
 * `stateOf` takes one back out as a checkpoint of its own.
 */
export function stateOf(states: SafetensorsFile, i: number): SafetensorsFile {
  const prefix = `${i}/`;
  const tensors: Record<string, StTensor> = {};
  for (const [name, t] of Object.entries(states.tensors)) {
    if (name.startsWith(prefix)) tensors[name.slice(prefix.length)] = t;
  }
  return { tensors, metadata: states.metadata };
}

/** Rebuild a model from checkpoint bytes (or a decoded file); every parameter must be present with its
 *  shape. `expected`: refuse any other model config before building anything. */
export function modelFromSafetensors(
  rt: Runtime,
  bytes: Uint8Array | SafetensorsFile,
  label = "checkpoint",
  expected?: ModelConfig,
): { model: Model; metadata: Record<string, string> } {
  return modelFromFile(rt, bytes instanceof Uint8Array ? decodeSafetensors(bytes, label) : bytes, label, expected);
}

function modelFromFile(
  rt: Runtime,
  { tensors, metadata }: SafetensorsFile,
  label: string,
  expected?: ModelConfig,
): { model: Model; metadata: Record<string, string> } {
  if (metadata.format !== FORMAT) {
    throw new Error(`${label}: not a model checkpoint of this project (format ${metadata.format ?? "missing"})`);
  }
  let config: unknown;
  try {
    config = JSON.parse(metadata.config ?? "null");
  } catch {
    throw new Error(`${label}: model config in metadata is not JSON`);
  }
  const parsed = ModelConfig.safeParse(config);
  if (!parsed.success) throw new Error(`${label}: bad model config in metadata: ${parsed.error.message}`);
  // Checked before building: an untrusted checkpoint could otherwise name a model of any size.
  if (expected && JSON.stringify(parsed.data) !== JSON.stringify(ModelConfig.parse(expected))) {
    throw new Error(
      `${label}: the checkpoint's model ${JSON.stringify(parsed.data)} is not the expected ${
        JSON.stringify(ModelConfig.parse(expected))
      }`,
    );
  }
  const model = buildModel(rt, parsed.data, 0);
  for (const p of model.params) {
    const t = tensors[p.name];
    if (!t) throw new Error(`${label}: missing tensor ${p.name}`);
    if (t.dtype !== "F32" || t.shape.join() !== p.shape.join()) {
      throw new Error(`${label}: ${p.name} is ${t.dtype} [${t.shape}], expected F32 [${p.shape}]`);
    }
    p.value.release();
    p.value = rt.upload(t.data as Float32Array, p.shape);
    p.host = Float64Array.from(t.data as Float32Array);
    const v = tensors[p.name + VELOCITY];
    if (v && p.trainable) {
      if (v.dtype !== "F32" || v.shape.join() !== p.shape.join()) {
        throw new Error(`${label}: ${p.name}${VELOCITY} is ${v.dtype} [${v.shape}], expected F32 [${p.shape}]`);
      }
      p.velocity = rt.upload(v.data as Float32Array, p.shape);
    }
  }
  return { model, metadata };
}

/**
 * A model with its parameters on the host only (float64 twin values, `forwardRef`): for checking a
 * checkpoint on a machine without a device (the coordinator's spot checks). Device values are stubs
 * that throw when used. `expected`: refuse any other model config before building anything.
 */
export function hostModelFromSafetensors(
  bytes: Uint8Array,
  label = "checkpoint",
  expected?: ModelConfig,
): { model: Model; metadata: Record<string, string> } {
  return modelFromFile(hostRuntime(label), decodeSafetensors(bytes, label), label, expected);
}

/** A runtime whose tensors are shapes only (throwing when used): for models whose values live on the host. */
function hostRuntime(label: string): Runtime {
  const stub = (): never => {
    throw new Error(`${label}: a host-only model has no device tensors`);
  };
  const hostOnly = {
    upload: (_: unknown, shape: readonly number[]) => ({
      shape,
      size: shape.reduce((x, y) => x * y, 1),
      release() {},
      retain: stub,
      reshape: stub,
    }),
  };
  return hostOnly as unknown as Runtime;
}

const counts = new Map<string, number>();
/** Elements in all parameters of a model config (running statistics included), counted without a device
 *  (and once per config: building initialises every parameter on the host). */
export function parameterCountOf(config: ModelConfig): number {
  const key = JSON.stringify(config);
  let n = counts.get(key);
  if (n === undefined) {
    n = buildModel(hostRuntime("parameterCountOf"), config, 0).params.reduce((s, p) => s + p.value.size, 0);
    counts.set(key, n);
  }
  return n;
}

export async function saveModel(
  rt: Runtime,
  model: Model,
  path: string,
  extra?: Record<string, unknown>,
): Promise<void> {
  await writeBytesAtomic(path, await modelToSafetensors(rt, model, extra));
}

export async function loadModel(
  rt: Runtime,
  path: string,
): Promise<{ model: Model; metadata: Record<string, string> }> {
  return modelFromFile(rt, await loadCheckpoint(path), path);
}
