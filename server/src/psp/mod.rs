//! The fake payment provider (Stripe-like intents, ledger, signed webhooks).
