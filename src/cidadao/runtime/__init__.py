"""Running the services on one machine (`cidadao up`)."""
