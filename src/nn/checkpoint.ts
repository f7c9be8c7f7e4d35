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

/** Read every parameter off the device (one readback) into a safetensors byte buffer. */
export async function modelToSafetensors(
  rt: Runtime,
  model: Model,
  extra: Record<string, unknown> = {},
): Promise<Uint8Array> {
  const values = await rt.readMany(model.params.map((p) => p.value));
  const tensors: Record<string, StTensor> = {};
  model.params.forEach((p, i) => (tensors[p.name] = { dtype: "F32", shape: p.shape, data: values[i] as Float32Array }));
  const metadata: Record<string, string> = { format: FORMAT, config: JSON.stringify(model.config) };
  for (const [k, v] of Object.entries(extra)) metadata[k] = typeof v === "string" ? v : JSON.stringify(v);
  return encodeSafetensors(tensors, metadata);
}

/** Rebuild a model from checkpoint bytes; every parameter must be present with its shape. */
export function modelFromSafetensors(
  rt: Runtime,
  bytes: Uint8Array,
  label = "checkpoint",
): { model: Model; metadata: Record<string, string> } {
  return modelFromFile(rt, decodeSafetensors(bytes, label), label);
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
  return modelFromFile(hostOnly as unknown as Runtime, decodeSafetensors(bytes, label), label, expected);
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
