package CGI::Session::Driver::kvstest;
# A CGI::Session driver over any client with get/set/delete-like methods
# (Cache::Memcached, Cache::Memcached::Fast, Redis), as the CPAN memcached and
# Redis drivers do: the serialized session string is stored under Prefix . id.
use strict;
use warnings;
use parent 'CGI::Session::Driver';

sub init {
    my $self = shift;
    return $self->set_error("init(): Handle is required") unless $self->{Handle};
    $self->{Prefix} = '' unless defined $self->{Prefix};
    return 1;
}

sub retrieve {
    my ($self, $sid) = @_;
    my $data = $self->{Handle}->get($self->{Prefix} . $sid);
    return defined $data ? $data : 0;
}

sub store {
    my ($self, $sid, $datastr) = @_;
    $self->{Handle}->set($self->{Prefix} . $sid, $datastr);
    return 1;
}

sub remove {
    my ($self, $sid) = @_;
    my $handle = $self->{Handle};
    $handle->can('del') ? $handle->del($self->{Prefix} . $sid)
                        : $handle->delete($self->{Prefix} . $sid);
    return 1;
}

sub traverse { return 1 }

1;
