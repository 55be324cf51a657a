/** A value as JSON, cut short: a megabyte-long string in a file must not become a megabyte-long message. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = stringify(value);
  return text.length > MAX_DESCRIBED ? `${text.slice(0, MAX_DESCRIBED)}... (${text.length} characters)` : text;
}

const MAX_DESCRIBED = 80;

/** JSON.stringify recurses: a list nested a hundred thousand deep overflows the stack. */
function stringify(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch {
    return Array.isArray(value) ? 'a deeply nested array' : 'a deeply nested object';
  }
}
