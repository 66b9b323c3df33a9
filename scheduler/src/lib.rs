//! The scheduler: assigns every unscheduled pod to a node by filtering the
//! nodes (predicates), scoring the rest (priorities) and binding through the
//! pods/binding subresource. Nothing is here yet: the binary says so and
//! exits non-zero.
