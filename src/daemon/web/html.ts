/** Text put into the daemon's own HTML pages (consent, login, 401): every character that could end a text or an attribute is escaped. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
