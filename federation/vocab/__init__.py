"""Hand-written ActivityStreams vocabulary: frozen values and their JSON renderings."""
