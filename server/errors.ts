// Errors that carry their HTTP status: the app turns them into 4xx/5xx `{ error }` bodies.
export class ApiError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 409 | 410 | 413 | 415 | 422 | 429 | 500 | 503,
    message: string,
  ) {
    super(message);
  }
}
