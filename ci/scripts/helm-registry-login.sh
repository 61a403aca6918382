#!/usr/bin/env bash
# Log helm in to ACR with a token of the Azure CLI's identity (run inside AzureCLI@2, whose service
# connection may pull/push on the registry). The token is passed on stdin, never on the command line.
#   ACR_NAME  the registry's name (myregistry for myregistry.azurecr.io)
set -euo pipefail
: "${ACR_NAME:?ACR_NAME is needed}"
az acr login --name "$ACR_NAME" --expose-token --output tsv --query accessToken \
  | helm registry login "$ACR_NAME.azurecr.io" --username 00000000-0000-0000-0000-000000000000 --password-stdin
