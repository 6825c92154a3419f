"""Operations tests: deploy/ artefacts validated with the tools that consume them."""
