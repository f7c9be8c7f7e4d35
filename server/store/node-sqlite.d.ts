// node:sqlite (Deno, Node >= 22.5) is not in @types/node 20: the slice store/sqlite-deno.ts uses.
declare module "node:sqlite" {
  export class DatabaseSync {
    constructor(path: string);
    prepare(sql: string): { all(...p: unknown[]): unknown[]; run(...p: unknown[]): { changes: number | bigint } };
    exec(sql: string): void;
    close(): void;
  }
}
