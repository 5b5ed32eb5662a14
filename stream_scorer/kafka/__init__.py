"""Everything that talks to Kafka: the local broker launcher, topic admin and client settings."""
