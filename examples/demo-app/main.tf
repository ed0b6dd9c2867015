# INTENTIONALLY INSECURE DEMO CODE for secai's examples — do not apply.
# A public S3 bucket without encryption, versioning or access logging, and SSH open to the world.

provider "aws" {
  region = "us-east-1"
}

resource "aws_s3_bucket" "demo" {
  bucket = "secai-demo-insecure-bucket"
  acl    = "public-read"
}

resource "aws_security_group" "ssh" {
  name        = "secai-demo-ssh"
  description = "SSH from anywhere"

  ingress {
    from_port   = 22
    to_port     = 22
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}
