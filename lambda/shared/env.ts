/** Infra and runtime meet only through environment variables; each is checked once at cold start. */

/** The values of `names`, throwing `"X environment variable is not set"` for the first missing one. */
export function requireEnv<const N extends readonly string[]>(names: N): Record<N[number], string> {
  const values: Record<string, string> = {};
  for (const name of names) {
    const value = process.env[name];
    if (!value) throw new Error(`${name} environment variable is not set`);
    values[name] = value;
  }
  return values as Record<N[number], string>;
}
