"""All job business logic: submit, queue and dispatch, follow outcomes, retry, reconcile."""
