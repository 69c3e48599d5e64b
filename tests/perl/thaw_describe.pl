#!/usr/bin/perl
# Read a Storable blob on stdin, thaw it with Perl's Storable and print
# StorableDescribe's JSON view: used to check that Perl reads what Python wrote.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Storable qw(thaw);
use StorableDescribe qw(describe_root to_json);
binmode STDIN;
local $/;
my $blob = <STDIN>;
my $value = thaw($blob);
die "thaw failed\n" unless defined $value;
print to_json(describe_root($value));
