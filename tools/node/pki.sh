#!/usr/bin/env bash
# pki.sh DIR NODE_IP SERVICE_IP NODE_NAME API_PORT: a CA, the serving and client certificates of
# every component (ECDSA P-256) and a kubeconfig per identity; identities the default RBAC knows.
set -euo pipefail
P=$1 NODE_IP=$2 SERVICE_IP=$3 NODE_NAME=$4 API_PORT=$5
mkdir -p "$P" && cd "$P"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2> /dev/null; }
key ca.key
openssl req -x509 -new -key ca.key -out ca.crt -days 7 -subj "/CN=speech-stack-node-ca" 2> /dev/null
cert() {  # cert NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$2" 2> /dev/null |
    openssl x509 -req -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 -out "$1.crt" -extfile <(
      echo "basicConstraints=CA:FALSE"; echo "keyUsage=digitalSignature,keyEncipherment"; echo "extendedKeyUsage=$3"
      [ -z "${4:-}" ] || echo "subjectAltName=$4") 2> /dev/null
}
cert apiserver /CN=kube-apiserver serverAuth "IP:127.0.0.1,IP:$NODE_IP,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,\
DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
cert kubelet-serving "/CN=$NODE_NAME" serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
cert admin "/O=system:masters/CN=speech-stack-admin" clientAuth
cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
cert kube-controller-manager /CN=system:kube-controller-manager clientAuth
cert kube-scheduler /CN=system:kube-scheduler clientAuth
cert kube-proxy /CN=system:kube-proxy clientAuth
# the aggregation layer: the API server proves itself to extension API servers (KEDA's metrics adapter)
# with a client certificate of its own CA, whose subject they accept (--requestheader-allowed-names)
key front-proxy-ca.key
openssl req -x509 -new -key front-proxy-ca.key -out front-proxy-ca.crt -days 7 -subj "/CN=speech-stack-front-proxy-ca" 2> /dev/null
key front-proxy-client.key
openssl req -new -key front-proxy-client.key -subj /CN=front-proxy-client 2> /dev/null |
  openssl x509 -req -CA front-proxy-ca.crt -CAkey front-proxy-ca.key -CAcreateserial -days 7 -out front-proxy-client.crt \
    -extfile <(echo "extendedKeyUsage=clientAuth") 2> /dev/null
key sa.key
openssl pkey -in sa.key -pubout -out sa.pub 2> /dev/null
for who in admin kubelet kube-controller-manager kube-scheduler kube-proxy; do
  cat > "$who.kubeconfig" <<EOC
apiVersion: v1
kind: Config
current-context: speech-node
clusters:
- name: speech-node
  cluster: {server: "https://$NODE_IP:$API_PORT", certificate-authority: "$P/ca.crt"}
users:
- name: $who
  user: {client-certificate: "$P/$who.crt", client-key: "$P/$who.key"}
contexts:
- name: speech-node
  context: {cluster: speech-node, user: $who}
EOC
done
