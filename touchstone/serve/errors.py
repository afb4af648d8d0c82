"""What a request can run into besides bad input (a UserError, 422): each maps to one HTTP status in
`touchstone.serve.app`."""


class Unavailable(Exception):
    """The request cannot be served now (no model, busy judge): a 503 with this message."""


class NotFound(Exception):
    """What the request names does not exist (a model, the workspace's ledger): a 404 with this message."""


class Conflict(Exception):
    """The request conflicts with what is running (a second retrain): a 409 with this message."""
